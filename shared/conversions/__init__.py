"""Proto <-> internal type conversions, one module per boundary.

Each boundary module exposes `*_to_proto` / `*_from_proto` pairs. `ROUND_TRIPS` lists every
top-level message with its pair, so that one test can check that every field of every message
survives a round trip (a new proto field without a converter fails it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from shared.conversions import (
    catalog,
    fusion,
    image_encoder,
    replica,
    search,
    store,
    text_encoder,
)


class RoundTrip(NamedTuple):
    message: type
    to_proto: Callable[[Any], Any]
    from_proto: Callable[[Any], Any]


ROUND_TRIPS: tuple[RoundTrip, ...] = tuple(
    RoundTrip(msg, to, frm)
    for msg, to, frm in (
        (
            image_encoder.pb.EmbedImagesRequest,
            image_encoder.request_to_proto,
            image_encoder.request_from_proto,
        ),
        (
            image_encoder.pb.EmbedImagesResponse,
            image_encoder.response_to_proto,
            image_encoder.response_from_proto,
        ),
        (
            text_encoder.pb.EmbedTextsRequest,
            text_encoder.request_to_proto,
            text_encoder.request_from_proto,
        ),
        (
            text_encoder.pb.EmbedTextsResponse,
            text_encoder.response_to_proto,
            text_encoder.response_from_proto,
        ),
        (fusion.pb.FuseRequest, fusion.request_to_proto, fusion.request_from_proto),
        (fusion.pb.FuseResponse, fusion.response_to_proto, fusion.response_from_proto),
        (search.pb.SearchRequest, search.request_to_proto, search.request_from_proto),
        (search.pb.SearchResponse, search.response_to_proto, search.response_from_proto),
        (catalog.pb.CatalogEvent, catalog.event_to_proto, catalog.event_from_proto),
        (
            store.pb.SearchPointsRequest,
            store.search_request_to_proto,
            store.search_request_from_proto,
        ),
        (
            store.pb.SearchPointsResponse,
            store.search_response_to_proto,
            store.search_response_from_proto,
        ),
        (
            store.pb.SearchPointsBatchRequest,
            store.search_batch_request_to_proto,
            store.search_batch_request_from_proto,
        ),
        (
            store.pb.SearchPointsBatchResponse,
            store.search_batch_response_to_proto,
            store.search_batch_response_from_proto,
        ),
        (
            store.pb.RetrievePointsRequest,
            store.retrieve_request_to_proto,
            store.retrieve_request_from_proto,
        ),
        (
            store.pb.RetrievePointsResponse,
            store.retrieve_response_to_proto,
            store.retrieve_response_from_proto,
        ),
        (
            store.pb.UpsertPointsRequest,
            store.upsert_request_to_proto,
            store.upsert_request_from_proto,
        ),
        (
            store.pb.DeletePointsRequest,
            store.delete_request_to_proto,
            store.delete_request_from_proto,
        ),
        (store.pb.WriteResponse, store.write_response_to_proto, store.write_response_from_proto),
        (
            replica.pb.GetReplicaInfoRequest,
            replica.info_request_to_proto,
            replica.info_request_from_proto,
        ),
        (replica.pb.GetReplicaInfoResponse, replica.info_to_proto, replica.info_from_proto),
        (
            store.pb.UpdatePayloadsRequest,
            store.update_request_to_proto,
            store.update_request_from_proto,
        ),
        (
            search.pb.SearchBatchRequest,
            search.batch_request_to_proto,
            search.batch_request_from_proto,
        ),
        (
            search.pb.SearchBatchResponse,
            search.batch_response_to_proto,
            search.batch_response_from_proto,
        ),
        (
            store.pb.ScrollPointsRequest,
            store.scroll_request_to_proto,
            store.scroll_request_from_proto,
        ),
        (
            store.pb.ScrollPointsResponse,
            store.scroll_response_to_proto,
            store.scroll_response_from_proto,
        ),
    )
)
