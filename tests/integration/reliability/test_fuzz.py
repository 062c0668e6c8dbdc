"""Property-based fuzzing (hypothesis) of the running platform: the gateway's gRPC and HTTP APIs,
the fusion service, and catalog events through the real broker into the ingestion worker.

The property everywhere: a clear answer for every input (a status other than INTERNAL / UNKNOWN,
an HTTP status other than 5xx, a dead letter with its reason), and the service still serves.
Case counts scale with $VITRINE_FUZZ_* (`make chaos`); each test writes its tally to
$VITRINE_RELIABILITY_REPORT when set (docs/RELIABILITY.md).
"""

from __future__ import annotations

import json
import os

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operations.local_ray import internal_metadata
from shared.api.vitrine.fusion.v1 import fusion_pb2, fusion_pb2_grpc
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from shared.serving.endpoints import grpc_targets_sync
from tests.support.fuzzing import Tally, images, scale, text_values, truncated_images
from tests.support.http_api import request_json
from tests.support.platform import wait_serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A caller's mistake; anything else (INTERNAL, UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED) fails.
CLEAR = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
}
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
)


def fuzz(name: str, default: int) -> settings:
    """FUZZ with `default` examples, or $VITRINE_<NAME>."""
    return settings(FUZZ, max_examples=scale(name, default))


@pytest.fixture(scope="module")
def channel(platform):
    with grpc.insecure_channel(platform.gateway) as channel:
        wait_serving(channel)
        yield channel


def _still_serving(channel) -> None:
    wait_serving(channel, timeout_s=30)
    reply = pb_grpc.SearchServiceStub(channel).Search(pb.SearchRequest(text="red"), timeout=30)
    assert reply.hits


def _conditions():
    keys = st.one_of(
        st.sampled_from(["baseColour", "year", "articleType", ""]), st.text(max_size=20)
    )
    value = st.one_of(
        st.builds(lambda v: {"keyword": v}, st.text(max_size=30)),
        st.builds(lambda v: {"integer": v}, st.integers(-(2**63), 2**63 - 1)),
        st.builds(lambda v: {"boolean": v}, st.booleans()),
        st.builds(
            lambda v: {"any_of": pb.KeywordList(values=v)},
            st.lists(st.text(max_size=10), max_size=300),
        ),
        st.builds(
            lambda b: {"range": pb.Range(**b)},
            st.dictionaries(
                st.sampled_from(["gt", "gte", "lt", "lte"]),
                st.floats(allow_nan=True, allow_infinity=True),
            ),
        ),
        st.just({}),
    )
    return st.builds(lambda k, v: pb.Condition(key=k, **v), keys, value)


def _search_requests():
    reference = st.one_of(
        st.just({}),
        st.builds(lambda b: {"image": b}, images()),
        st.builds(
            lambda p: {"product_id": p},
            st.one_of(st.sampled_from([f"p{i}" for i in range(12)]), st.text(max_size=100)),
        ),
    )
    flt = st.builds(
        lambda must, must_not: pb.Filter(must=must, must_not=must_not),
        st.lists(_conditions(), max_size=4),
        st.lists(_conditions(), max_size=70),
    )
    return st.builds(
        lambda text, ref, top_k, f: pb.SearchRequest(text=text, top_k=top_k, filter=f, **ref),
        text_values(),
        reference,
        st.one_of(st.integers(0, 200), st.integers(0, 2**32 - 1)),
        st.one_of(st.none(), flt),
    )


def test_fuzzed_search_requests_get_clear_statuses(channel):
    stub, tally = (
        pb_grpc.SearchServiceStub(channel),
        Tally("gRPC SearchRequest fields", fuzzed=True),
    )

    @fuzz("fuzz_requests", 800)
    @given(request=_search_requests())
    def check(request):
        code, details = grpc.StatusCode.OK, ""
        try:
            stub.Search(request, timeout=30)
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
            assert details, "an error status needs a message"
        tally.add(code.name)
        assert code in CLEAR, f"{code.name}: {details[:500]}"

    check()
    tally.write()
    _still_serving(channel)


def test_undecodable_and_oversized_requests(channel):
    raw = channel.unary_unary("/vitrine.search.v1.SearchService/Search")  # bytes in, bytes out
    tally = Tally("gRPC raw request bytes", fuzzed=True)

    @fuzz("fuzz_raw", 300)
    @given(body=st.one_of(st.binary(max_size=512), truncated_images()))
    def check(body):
        try:
            pb.SearchResponse.FromString(raw(body, timeout=30))
            code = grpc.StatusCode.OK
        except grpc.RpcError as e:
            code = e.code()
        tally.add(code.name)
        assert code in CLEAR, (code, body)

    check()
    stub = pb_grpc.SearchServiceStub(channel)
    for size in (9 * 2**20, 32 * 2**20):  # over the gateway's 8 MiB request limit
        with pytest.raises(grpc.RpcError) as info:
            stub.Search(pb.SearchRequest(image=os.urandom(size)), timeout=60)
        tally.add(info.value.code().name)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    tally.write()
    _still_serving(channel)


def test_fuzzed_http_bodies_never_get_a_server_error(platform, channel):
    tally = Tally("HTTP /v1/search bodies", fuzzed=True)
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )
    fields = st.fixed_dictionaries(
        {},
        optional={
            "text": st.one_of(text_values(), json_values),
            "top_k": st.one_of(st.integers(-5, 2**40), json_values),
            "product_id": st.one_of(st.text(max_size=20), json_values),
            "image": st.one_of(st.just("not base64!"), st.just("aGVsbG8="), json_values),
            "filter": json_values,
            "unknown_field": json_values,
        },
    )
    bodies = st.one_of(
        fields.map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
    )

    @fuzz("fuzz_http", 300)
    @given(body=bodies)
    def check(body):
        status = request_json(f"{platform.http}/v1/search", body).status  # JSON, errors too
        tally.add(str(status))
        assert status < 500, (status, body)

    check()
    tally.write()
    _still_serving(channel)


def test_fusion_refuses_wrong_embedding_shapes(platform, channel):
    """Fusion's own gRPC API (the gateway never sends it these): wrong dimensions, counts that
    disagree, data of the wrong length."""
    tally = Tally("fusion FuseRequest shapes", fuzzed=True)
    with grpc.insecure_channel(grpc_targets_sync("fusion")[0]) as fusion_channel:
        stub = fusion_pb2_grpc.FusionServiceStub(fusion_channel)

        def batch(count, dim, extra):
            data = np.ones(count * dim, "<f4").tobytes()
            data = data + b"\0" * extra if extra > 0 else data[: max(0, len(data) + extra)]
            return fusion_pb2.EmbeddingBatch(count=count, dim=dim, data=data)

        shapes = st.tuples(st.integers(0, 4), st.integers(0, 40), st.sampled_from([0, 0, -4, 4]))

        @fuzz("fuzz_fusion", 200)
        @given(image=shapes, text=shapes)
        def check(image, text):
            request = fusion_pb2.FuseRequest(
                image_embeddings=batch(*image), text_embeddings=batch(*text)
            )
            try:
                stub.Fuse(request, timeout=30, metadata=internal_metadata("fusion"))
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            tally.add(code.name)
            assert code in CLEAR, (code, image, text)
            if image != text or image[1] != 16 or image[2] != 0:  # the tiny bundle's dim is 16
                assert code != grpc.StatusCode.OK, (image, text)

        check()
    tally.write()
    _still_serving(channel)
