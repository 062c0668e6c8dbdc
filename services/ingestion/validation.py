"""What a catalog event may be: the sizes it may have, and the version that orders a product's
events (the ingestion worker's batch processor dead-letters an event that breaks them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.ingestion.fetch_policy import PoisonError
from shared.catalogs import SEPARATOR, catalog_problem
from shared.types import CatalogEvent
from shared.vectorstore.base import RESERVED_FIELDS

MAX_VERSION = 2**63 - 1  # the engines store integers as int64
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class EventLimits:
    """Sizes a catalog event may have: a product whose title or attributes are huge would
    weigh on every search that returns it, so it is dead-lettered instead."""

    max_product_id_chars: int = 256
    max_title_chars: int = 1000
    max_attributes: int = 64
    max_attribute_name_chars: int = 64
    max_attribute_value_chars: int = 1000

    def check(self, event: CatalogEvent) -> None:
        """Raises PoisonError naming the first limit `event` breaks, or a reserved key."""
        if len(event.product_id) > self.max_product_id_chars:
            raise PoisonError(f"product_id is longer than {self.max_product_id_chars} characters")
        if SEPARATOR in event.product_id:
            raise PoisonError("product_id holds the unit separator (\\x1f), which keys catalogs")
        if problem := catalog_problem(event.catalog):
            raise PoisonError(problem)
        if len(event.title) > self.max_title_chars:
            raise PoisonError(
                f"title has {len(event.title)} characters, more than {self.max_title_chars}"
            )
        if len(event.attributes) > self.max_attributes:
            raise PoisonError(
                f"{len(event.attributes)} attributes, more than {self.max_attributes}"
            )
        for name, value in event.attributes.items():
            if name in RESERVED_FIELDS:
                raise PoisonError(
                    f"attribute {name!r} is reserved: the platform owns "
                    f"{', '.join(sorted(RESERVED_FIELDS))}"
                )
            if not name or len(name) > self.max_attribute_name_chars:
                raise PoisonError(
                    f"attribute name {name[:80]!r}: 1..{self.max_attribute_name_chars} characters"
                )
            if len(value) > self.max_attribute_value_chars:
                raise PoisonError(
                    f"attribute {name!r} has {len(value)} characters, more than "
                    f"{self.max_attribute_value_chars}"
                )


def event_version(event: CatalogEvent, timestamp_ms: int | None = None) -> int:
    """The version that orders a product's events: the explicit `version`, else the event time
    in microseconds, else the Kafka record's timestamp in microseconds, else 0 (unversioned).

    Raises:
        PoisonError: an explicit version beyond what the store keeps.
    """
    if event.version:
        if event.version > MAX_VERSION:
            raise PoisonError(f"version {event.version} is larger than {MAX_VERSION}")
        return event.version
    if event.event_time is not None:
        micros = (event.event_time - _EPOCH) // dt.timedelta(microseconds=1)
        if micros > 0:
            return micros
    if timestamp_ms is not None and timestamp_ms > 0:
        # The end of the record's millisecond: a delete sent right after an upsert whose
        # event_time fell in the same millisecond still comes after it.
        return timestamp_ms * 1000 + 999
    return 0
