"""Several catalogs (tenants) in one deployment.

Every catalog event and every query belongs to a catalog; the empty name is the default
catalog, which a deployment with one catalog never names. The store keeps one collection for
all catalogs and tells them apart two ways:

- the store's product key is catalog-qualified (`qualify`): `CATALOG\\x1fPRODUCT` for a named
  catalog, the bare product id for the default one. Two catalogs may use the same product ids,
  and versions, tombstones and point ids stay per catalog and product. The gateway and the
  ingestion worker qualify ids on the way in and strip them on the way out; clients never see
  a qualified id.
- a named catalog's points carry `catalog` in their payload, a keyword index Qdrant builds as a
  tenant index; the default catalog's points carry none. Every query is filtered to its
  catalog: `catalog == NAME`, or for the default catalog `catalog` absent. A caller's own
  filter can only narrow that (conditions are ANDed).
"""

from __future__ import annotations

import re

from shared.types import Condition, Filter, Missing

CATALOG_FIELD = "catalog"
DEFAULT_CATALOG = ""
SEPARATOR = "\x1f"  # ASCII unit separator: refused in catalog names and product ids
CATALOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def catalog_problem(name: str) -> str | None:
    """Why `name` cannot name a catalog (None: it can; the empty name is the default)."""
    if name == DEFAULT_CATALOG or CATALOG_NAME.fullmatch(name):
        return None
    return (
        f"catalog {name[:80]!r} is not a catalog name: 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit"
    )


def qualify(catalog: str, product_id: str) -> str:
    """The store's key of a catalog's product."""
    return f"{catalog}{SEPARATOR}{product_id}" if catalog else product_id


def unqualify(key: str) -> tuple[str, str]:
    """(catalog, product id) of a store key."""
    catalog, sep, product_id = key.partition(SEPARATOR)
    return (catalog, product_id) if sep else (DEFAULT_CATALOG, key)


def scoped(flt: Filter, catalog: str) -> Filter:
    """`flt` narrowed to one catalog's products."""
    condition = Condition(CATALOG_FIELD, catalog if catalog else Missing())
    return Filter((*flt.must, condition), flt.must_not)
