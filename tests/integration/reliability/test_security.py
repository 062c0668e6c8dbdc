"""The gateway's authentication and transport security, on real gateways beside the platform's:
one with TLS and API keys, one with mTLS. Certificates come from a throwaway CA (tests/support/certs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from operations.search import client_channel
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from tests.support.certs import Pki, make_pki
from tests.support.http_api import request_json
from tests.support.platform import add_gateways, wait_serving
from tests.support.tiny import write_catalog

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEARCH_KEY = "shopper-key-0123456789abcdef"
INFO_KEY = "ops-key-fedcba9876543210"
UNKNOWN_KEY = "not-a-configured-key-000000"
LIMITED_KEY = "limited-key-0123456789abcdef"
SHOES_KEY = "shoes-shop-key-0123456789ab"
BAGS_KEY = "bags-shop-key-0123456789abc"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gateways(platform, pki, tmp_path_factory) -> dict[str, tuple[str, str]]:
    keys = tmp_path_factory.mktemp("secrets") / "api-keys"
    keys.write_text(
        f"# name:key:scopes[:rate]\nshopper:{SEARCH_KEY}:search\nops:{INFO_KEY}:info\n"
        f"limited:{LIMITED_KEY}:search:rate=1/min\n"
        f"shoes-shop:{SHOES_KEY}:search:catalogs=shoes\nbags-shop:{BAGS_KEY}:search:catalogs=bags\n"
    )
    tls = {"tls_cert_file": str(pki.server_cert), "tls_key_file": str(pki.server_key)}
    addresses = add_gateways(
        platform,
        {
            "gateway-tls": {"api_keys_file": str(keys), **tls},
            "gateway-mtls": {**tls, "tls_client_ca_file": str(pki.ca)},
        },
    )
    for name, (address, _) in addresses.items():
        cert = {"cert": str(pki.client_cert), "key": str(pki.client_key)} if "mtls" in name else {}
        with client_channel(address, ca=str(pki.ca), **(cert or _NO_CERT)) as channel:
            wait_serving(channel)
    return addresses


_NO_CERT = {"cert": None, "key": None}


def _search(channel: grpc.Channel, key: str | None) -> pb.SearchResponse:
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    return pb_grpc.SearchServiceStub(channel).Search(
        pb.SearchRequest(text="red shirt", top_k=3), timeout=30, metadata=metadata
    )


def _code(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value.code(), info.value.details() or ""


def test_calls_without_valid_credentials_are_rejected(gateways, pki):
    with client_channel(gateways["gateway-tls"][0], ca=str(pki.ca), **_NO_CERT) as channel:
        code, message = _code(lambda: _search(channel, None))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "authorization: Bearer" in message
        assert _code(lambda: _search(channel, UNKNOWN_KEY))[0] == grpc.StatusCode.UNAUTHENTICATED
        # x-api-key is the other accepted header; a key without the scope is refused.
        stub = pb_grpc.SearchServiceStub(channel)
        code, message = _code(
            lambda: stub.Search(
                pb.SearchRequest(text="red"), timeout=30, metadata=(("x-api-key", INFO_KEY),)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "'ops'" in message and "'search'" in message
        # Health stays open (Kubernetes probes); reflection needs a key, any scope.
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = [reflection_pb2.ServerReflectionRequest(list_services="")]
        code, _ = _code(lambda: list(reflect.ServerReflectionInfo(iter(ask), timeout=10)))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        (answer,) = reflect.ServerReflectionInfo(
            iter(ask), timeout=10, metadata=(("x-api-key", INFO_KEY),)
        )
        assert answer.list_services_response.service


def test_a_call_over_tls_with_a_valid_key_succeeds(gateways, pki):
    with client_channel(gateways["gateway-tls"][0], ca=str(pki.ca), **_NO_CERT) as channel:
        assert len(_search(channel, SEARCH_KEY).hits) == 3


def test_plaintext_and_untrusted_clients_cannot_connect(gateways, pki):
    with grpc.insecure_channel(gateways["gateway-tls"][0]) as channel:
        assert _code(lambda: _search(channel, SEARCH_KEY))[0] == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA refuses the gateway's certificate.
    with client_channel(gateways["gateway-tls"][0], ca=str(pki.other_ca), **_NO_CERT) as channel:
        assert _code(lambda: _search(channel, SEARCH_KEY))[0] == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_configured_ca(gateways, pki):
    address = gateways["gateway-mtls"][0]
    cert = {"cert": str(pki.client_cert), "key": str(pki.client_key)}
    with client_channel(address, ca=str(pki.ca), **cert) as channel:
        assert len(_search(channel, None).hits) == 3  # this gateway has no API keys
    stranger = {"cert": str(pki.stranger_cert), "key": str(pki.stranger_key)}
    for refused in (_NO_CERT, stranger):
        with client_channel(address, ca=str(pki.ca), **refused) as channel:
            assert _code(lambda: _search(channel, None))[0] == grpc.StatusCode.UNAVAILABLE


def test_http_api_over_tls_with_keys_and_a_body_limit(gateways, pki):
    base = f"https://{gateways['gateway-tls'][1]}"
    query = json.dumps({"text": "red shirt", "top_k": 2}).encode()
    status, body, headers = request_json(f"{base}/v1/search", query, ca=pki.ca)
    assert (status, body["code"]) == (401, "UNAUTHENTICATED")
    assert headers.get("www-authenticate") == "Bearer"
    status, body, _ = request_json(
        f"{base}/v1/search", query, headers={"x-api-key": INFO_KEY}, ca=pki.ca
    )
    assert (status, body["code"]) == (403, "PERMISSION_DENIED")
    bearer = {"authorization": f"Bearer {SEARCH_KEY}"}
    status, body, _ = request_json(f"{base}/v1/search", query, headers=bearer, ca=pki.ca)
    assert status == 200 and len(body["hits"]) == 2
    status, body, _ = request_json(f"{base}/v1/info", headers={"x-api-key": INFO_KEY}, ca=pki.ca)
    assert status == 200 and body["catalog"]["points"] > 0
    assert request_json(f"{base}/healthz", ca=pki.ca).status == 200  # open, for probes
    huge = json.dumps({"text": "x" * (9 * 2**20)}).encode()  # over the 8 MiB default
    status, body, _ = request_json(f"{base}/v1/search", huge, headers=bearer, ca=pki.ca)
    assert (status, body["code"]) == (413, "RESOURCE_EXHAUSTED")


def test_the_cli_searches_over_tls_with_a_key_from_the_environment(
    gateways, pki, capsys, monkeypatch
):
    from cli.app import main

    address = gateways["gateway-tls"][0]
    args = ["search", "red shirt", "--gateway", address, "--tls-ca", str(pki.ca), "--json"]
    assert main(args) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    monkeypatch.setenv("VITRINE_API_KEY", SEARCH_KEY)
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["hits"]


def test_keys_never_reach_the_logs(gateways, pki):
    """After the calls above (wrong keys included), no Ray log holds a key."""
    import ray

    with client_channel(gateways["gateway-tls"][0], ca=str(pki.ca), **_NO_CERT) as channel:
        _code(lambda: _search(channel, UNKNOWN_KEY))
    logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_bytes()
        for key in (SEARCH_KEY, INFO_KEY, UNKNOWN_KEY):
            assert key.encode() not in text, f"{key} found in {path}"
    assert list((logs / "serve").glob("replica_gateway-tls_*"))  # the scan saw the gateway's log


def test_a_key_over_its_rate_gets_resource_exhausted_with_a_retry_hint(gateways, pki):
    address, http = gateways["gateway-tls"]
    with client_channel(address, ca=str(pki.ca), **_NO_CERT) as channel:
        assert len(_search(channel, LIMITED_KEY).hits) == 3
        with pytest.raises(grpc.RpcError) as info:
            _search(channel, LIMITED_KEY)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "'limited'" in info.value.details() and "retry in" in info.value.details()
        trailers = dict(info.value.trailing_metadata() or ())
        assert 0 < int(trailers["retry-after-ms"]) <= 60_000
        # SearchBatch needs the search scope too.
        batch = pb.SearchBatchRequest(requests=[pb.SearchRequest(text="red")])
        code, _ = _code(
            lambda: pb_grpc.SearchServiceStub(channel).SearchBatch(
                batch, timeout=30, metadata=(("x-api-key", INFO_KEY),)
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
    status, body, headers = request_json(
        f"https://{http}/v1/search",
        json.dumps({"text": "red"}).encode(),
        headers={"x-api-key": LIMITED_KEY},
        ca=pki.ca,
    )
    assert (status, body["code"]) == (429, "RESOURCE_EXHAUSTED")
    assert 1 <= int(headers["retry-after"]) <= 60


@pytest.fixture(scope="module")
def two_catalogs(platform, tmp_path_factory):
    """Two more catalogs beside the platform's default one, with the same product ids."""
    from operations.indexing import index_catalog, proxy_address

    for name in ("shoes", "bags"):
        path = write_catalog(tmp_path_factory.mktemp(name), n=12)
        index_catalog(path, address=proxy_address(), batch_size=6, progress=False, catalog=name)
    return ("shoes", "bags")


def test_catalogs_never_meet_and_keys_stay_in_their_own(gateways, pki, two_catalogs):
    """1,000 random queries through two keys scoped to one catalog each: every hit is of the
    key's catalog; naming the other catalog is PERMISSION_DENIED."""
    import random

    rng = random.Random(7)
    words = ["red", "blue", "black", "shirt", "red shirt", "blue shirt 3"]  # tiny titles
    modes = [pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_LEXICAL, pb.SEARCH_MODE_HYBRID]
    seen = {"shoes": 0, "bags": 0}
    with client_channel(gateways["gateway-tls"][0], ca=str(pki.ca), **_NO_CERT) as channel:
        stub = pb_grpc.SearchServiceStub(channel)
        for i in range(1000):
            catalog, key = [("shoes", SHOES_KEY), ("bags", BAGS_KEY)][i % 2]
            kind = rng.choice(["text", "product", "composed", "examples"])
            request = pb.SearchRequest(top_k=rng.choice([3, 12]))
            if kind == "text":
                request.text, request.mode = rng.choice(words), rng.choice(modes)
            elif kind == "product":
                request.product_id = f"p{rng.randrange(12)}"
            elif kind == "composed":
                request.product_id, request.text = f"p{rng.randrange(12)}", "in black"
            else:
                request.positive_ids.append(f"p{rng.randrange(12)}")
            if rng.random() < 0.5:
                request.catalog = catalog  # named, or the key's one catalog by default
            reply = stub.Search(request, timeout=30, metadata=(("x-api-key", key),))
            assert reply.hits, request
            assert {h.payload["catalog"] for h in reply.hits} == {catalog}, (request, catalog)
            seen[catalog] += len(reply.hits)
        for key, other in ((SHOES_KEY, "bags"), (BAGS_KEY, "shoes")):
            request = pb.SearchRequest(text="red", catalog=other)
            code, message = _code(
                lambda r=request, k=key: stub.Search(r, timeout=30, metadata=(("x-api-key", k),))
            )
            assert code == grpc.StatusCode.PERMISSION_DENIED and "not scoped" in message
        # A key for every catalog reaches each, the default one included (no catalog field).
        default = stub.Search(
            pb.SearchRequest(text="red", top_k=12),
            timeout=30,
            metadata=(("x-api-key", SEARCH_KEY),),
        )
        assert default.hits and all("catalog" not in h.payload for h in default.hits)
    assert seen["shoes"] > 1000 and seen["bags"] > 1000
    base = f"https://{gateways['gateway-tls'][1]}/v1/search"
    status, body, _ = request_json(
        base, json.dumps({"text": "red", "top_k": 12}).encode(), headers={"x-api-key": BAGS_KEY},
        ca=pki.ca,
    )  # fmt: skip
    assert status == 200 and {h["payload"]["catalog"] for h in body["hits"]} == {"bags"}
    status, body, _ = request_json(
        base, json.dumps({"text": "red", "catalog": "shoes"}).encode(),
        headers={"x-api-key": BAGS_KEY}, ca=pki.ca,
    )  # fmt: skip
    assert (status, body["code"]) == (403, "PERMISSION_DENIED")
