"""The Serve platform over real gRPC and HTTP: gateway searches against a small indexed catalog.

The expected product of each query is what the same model bundle ranks first when run in this
process (exact cosine over the catalog), so these tests check that serving returns the model's
answer: right encoders, right fusion, right store, right filter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from operations.local_ray import internal_metadata
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2 as te_pb
from shared.api.vitrine.text_encoder.v1 import text_encoder_pb2_grpc as te_grpc
from shared.data.catalog import load_products
from shared.models.bundle import load_bundle
from shared.models.inference import embed_texts, fuse
from shared.models.transforms import decode_image
from tests.support.http_api import request_json

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Reference:
    """The bundle run in-process: exact rankings to compare the served ones with."""

    def __init__(self, bundle: Path, catalog: Path) -> None:
        self.model, _ = load_bundle(bundle)
        self.products = load_products(catalog)
        images = [decode_image(p.image.read_bytes()) for p in self.products]
        with __import__("torch").inference_mode():
            pixels = self.model.image.preprocessor.batch(images)
            self.vectors = self.model.image(pixels).numpy()

    def ranking(self, query: np.ndarray, keep=lambda p: True) -> list[str]:
        scores = self.vectors @ query
        order = np.argsort(-scores, kind="stable")
        return [self.products[i].id for i in order if keep(self.products[i])]

    def text(self, text: str) -> np.ndarray:
        return embed_texts(self.model, [text])[0]

    def composed(self, product_id: str, text: str) -> np.ndarray:
        i = next(k for k, p in enumerate(self.products) if p.id == product_id)
        return fuse(self.model, self.vectors[i : i + 1], self.text(text)[None])[0]


@pytest.fixture(scope="module")
def ref(platform) -> Reference:
    return Reference(platform.bundle, platform.catalog)


@pytest.fixture(scope="module")
def stub(platform):
    with grpc.insecure_channel(platform.gateway) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(120):  # the gateway reports SERVING once every dependency answers
            status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            __import__("time").sleep(0.5)
        assert status == health_pb2.HealthCheckResponse.SERVING, "gateway never became SERVING"
        yield pb_grpc.SearchServiceStub(channel)


def _ids(response: pb.SearchResponse) -> list[str]:
    return [h.product_id for h in response.hits]


def test_text_search_returns_the_models_top_product(stub, ref):
    response = stub.Search(
        pb.SearchRequest(text="red shirt", top_k=5, mode=pb.SEARCH_MODE_DENSE), timeout=30
    )
    assert _ids(response) == ref.ranking(ref.text("red shirt"))[:5]
    assert response.mode == pb.SEARCH_MODE_DENSE
    assert response.model_version
    assert response.timing.total_ms > 0
    top = response.hits[0]
    assert top.payload["title"].endswith(top.product_id[1:])  # payload travels with the hit


def test_image_search_finds_the_same_image_first(stub, ref):
    image = (ref.products[5].image).read_bytes()
    response = stub.Search(pb.SearchRequest(image=image, top_k=3), timeout=30)
    assert _ids(response)[0] == "p5"
    assert response.hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_product_id_reference_uses_the_indexed_vector(stub):
    response = stub.Search(pb.SearchRequest(product_id="p7", top_k=3), timeout=30)
    assert _ids(response)[0] == "p7"


@pytest.mark.parametrize("by", ["product_id", "image"])
def test_composed_search_uses_the_fusion_module(stub, ref, by):
    reference = (
        {"product_id": "p4"}
        if by == "product_id"
        else {"image": ref.products[4].image.read_bytes()}
    )
    response = stub.Search(pb.SearchRequest(text="in black", top_k=5, **reference), timeout=30)
    expected = ref.ranking(ref.composed("p4", "in black"))
    assert _ids(response) == expected[:5]
    # Fusion changes the query: the ranking differs from the plain image ranking.
    assert expected != ref.ranking(ref.vectors[4])
    assert response.timing.fuse_ms > 0


def test_filtered_search_keeps_only_matching_products(stub, ref):
    unfiltered = ref.ranking(ref.text("blue dress"))
    colour = next(
        p.attributes["baseColour"]
        for p in ref.products
        if p.id != unfiltered[0]
        and p.attributes["baseColour"]
        != next(q for q in ref.products if q.id == unfiltered[0]).attributes["baseColour"]
    )
    request = pb.SearchRequest(
        text="blue dress",
        top_k=10,
        filter=pb.Filter(must=[pb.Condition(key="baseColour", keyword=colour)]),
    )
    response = stub.Search(request, timeout=30)
    expected = ref.ranking(
        ref.text("blue dress"), keep=lambda p: p.attributes["baseColour"] == colour
    )
    assert _ids(response) == expected
    assert unfiltered[0] not in _ids(response)
    assert {h.payload["baseColour"] for h in response.hits} == {colour}

    excluded = pb.SearchRequest(
        text="blue dress",
        top_k=20,
        filter=pb.Filter(must_not=[pb.Condition(key="baseColour", keyword=colour)]),
    )
    assert colour not in {h.payload["baseColour"] for h in stub.Search(excluded, timeout=30).hits}


@pytest.mark.parametrize(
    ("request_kwargs", "code", "words"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "give a text"),
        ({"text": "red", "top_k": 100000}, grpc.StatusCode.RESOURCE_EXHAUSTED, "top_k"),
        ({"image": b"not an image"}, grpc.StatusCode.INVALID_ARGUMENT, "image 0"),
        ({"product_id": "no-such-product"}, grpc.StatusCode.NOT_FOUND, "no-such-product"),
        (
            {"text": "red", "filter": pb.Filter(must=[pb.Condition(key="year", range=pb.Range())])},
            grpc.StatusCode.INVALID_ARGUMENT,
            "no bound",
        ),
        ({"text": "x" * 5000}, grpc.StatusCode.RESOURCE_EXHAUSTED, "characters"),
    ],
)
def test_bad_requests_get_a_status_and_a_message(stub, request_kwargs, code, words):
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(pb.SearchRequest(**request_kwargs), timeout=30)
    assert info.value.code() == code
    assert words in info.value.details()


def test_oversized_request_is_resource_exhausted(stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Search(pb.SearchRequest(image=b"\0" * (9 * 2**20)), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_callers_that_give_up_leave_the_gateway_serving(stub):
    """Callers whose 1 ms deadline passes (the client enforces it, so this proves nothing about
    the gateway's own deadline: test_limits_and_degraded.py freezes a dependency for that) must
    not leave the gateway stuck: the next call is answered."""
    for _ in range(20):
        with pytest.raises(grpc.RpcError):
            stub.Search(pb.SearchRequest(text="red shirt"), timeout=0.001)
    assert stub.Search(pb.SearchRequest(text="red shirt"), timeout=30).hits


def test_health_and_reflection(platform):
    with grpc.insecure_channel(platform.gateway) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(
            health_pb2.HealthCheckRequest(service="vitrine.search.v1.SearchService")
        )
        assert check.status == health_pb2.HealthCheckResponse.SERVING
        # What the Kubernetes liveness probe asks (deploy/k8s/base/slot/rayservice.yaml).
        liveness = health.Check(health_pb2.HealthCheckRequest(service="vitrine.liveness"))
        assert liveness.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for s in answer.list_services_response.service}
        assert "vitrine.search.v1.SearchService" in names


def test_http_json_search(platform, ref):
    status, body, _ = request_json(
        f"{platform.http}/v1/search",
        json.dumps({"text": "red shirt", "top_k": 3, "mode": "dense"}).encode(),
    )
    assert status == 200, body
    assert [h["product_id"] for h in body["hits"]] == ref.ranking(ref.text("red shirt"))[:3]
    status, body, _ = request_json(f"{platform.http}/v1/search", b"{not json")
    assert status == 400 and "bad request body" in body["error"]
    status, body, _ = request_json(f"{platform.http}/v1/search", json.dumps({"top_k": 3}).encode())
    assert status == 400 and "give a text" in body["error"]


def test_http_info_page_and_thumbnails(platform):
    """GET /v1/info describes the catalog, GET / is the search page, hits carry a thumbnail."""
    with urllib.request.urlopen(f"{platform.http}/v1/info", timeout=30) as response:
        info = json.load(response)
    assert info["catalog"]["points"] == 12
    assert info["model_version"] and info["catalog"]["dimension"] > 0
    assert "baseColour" in info["catalog"]["indexed_fields"]
    with urllib.request.urlopen(f"{platform.http}/", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/html")
        page = response.read().decode()
    assert 'id="search-form"' in page and "/v1/search" in page
    status, body, _ = request_json(
        f"{platform.http}/v1/search", json.dumps({"text": "red shirt", "top_k": 1}).encode()
    )
    assert status == 200 and body["hits"][0]["payload"]["thumbnail"].startswith(
        "data:image/jpeg;base64,"
    )
    try:
        urllib.request.urlopen(f"{platform.http}/nowhere", timeout=30)
        raise AssertionError("expected 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404 and "search page" in json.load(e)["error"]


def test_encoder_over_grpc_at_its_published_target(platform):
    from shared.serving.endpoints import grpc_targets_sync

    (target,) = grpc_targets_sync("text-encoder")
    with grpc.insecure_channel(target) as channel:
        stub = te_grpc.TextEncoderServiceStub(channel)
        md = internal_metadata("text-encoder")
        response = stub.EmbedTexts(
            te_pb.EmbedTextsRequest(texts=["red", "blue shirt"]), metadata=md, timeout=30
        )
        assert (response.embeddings.count, response.embeddings.dim) == (2, 16)
        with pytest.raises(grpc.RpcError) as info:
            stub.EmbedTexts(te_pb.EmbedTextsRequest(texts=[]), metadata=md, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no texts" in info.value.details()


def test_concurrent_calls_share_batches_in_the_replica(platform):
    """Calls that arrive while a batch computes form the next batch (Serve 2.60's @serve.batch
    made one batch per call under this load; shared/serving/batching.py)."""
    import asyncio

    from operations.serve import internal_token, replica_infos
    from shared.serving.clients import TextEncoderClient
    from shared.serving.endpoints import grpc_targets_sync

    (target,) = grpc_targets_sync("text-encoder")

    async def burst(n: int) -> None:
        client = TextEncoderClient(targets=[target], internal_token=internal_token())
        try:
            replies = await asyncio.gather(
                *(client.embed_many([f"shirt {i}"], timeout_s=60) for i in range(n))
            )
        finally:
            await client.close()
        assert all(len(r.vectors) == 1 for r in replies)

    def counts() -> tuple[int, int]:
        ((_, info),) = replica_infos("text-encoder")
        return info.batching.batches, info.batching.items

    batches0, items0 = counts()
    for _ in range(3):  # 64 calls at once; a batch of more than one needs only one overlap
        asyncio.run(burst(64))
        batches, items = counts()
        if batches - batches0 < items - items0:
            break
    assert items - items0 >= 64
    assert batches - batches0 < items - items0, "every call computed alone: no batching"


PLAIN_CLIENT = """
import sys, grpc
sys.path.insert(0, sys.argv[1])
from vitrine.search.v1 import search_pb2, search_pb2_grpc
stub = search_pb2_grpc.SearchServiceStub(grpc.insecure_channel(sys.argv[2]))
reply = stub.Search(search_pb2.SearchRequest(product_id="p3", top_k=2), timeout=30)
assert "shared" not in sys.modules and "services" not in sys.modules
print(reply.hits[0].product_id, reply.hits[0].payload["title"])
"""


def test_plain_grpcio_client_with_only_the_protos(platform, tmp_path):
    out = tmp_path / "gen"
    out.mkdir()
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'protos'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            *protos,
        ],
        check=True,
    )
    (tmp_path / "client.py").write_text(textwrap.dedent(PLAIN_CLIENT))
    # -I: isolated mode, so neither the working directory nor PYTHONPATH put the project in reach.
    proc = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "client.py"), str(out), platform.gateway],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "p3"


def test_vector_store_over_grpc(platform):
    from shared.api.vitrine.store.v1 import store_pb2, store_pb2_grpc
    from shared.conversions import store as conv
    from shared.serving.endpoints import grpc_targets_sync
    from shared.vectorstore import Point

    (target,) = grpc_targets_sync("vector-store")
    vector = np.linspace(-1, 1, 16, dtype=np.float32)
    with grpc.insecure_channel(target) as channel:
        stub = store_pb2_grpc.VectorStoreServiceStub(channel)
        md = internal_metadata("vector-store")
        written = stub.UpsertPoints(
            conv.upsert_request_to_proto([Point("grpc-1", vector, {"title": "via grpc"})]),
            timeout=30,
            metadata=md,
        )
        assert written.count == 1
        search = store_pb2.SearchPointsRequest(vector=vector.tobytes(), top_k=1)
        found = stub.SearchPoints(search, timeout=30, metadata=md)
        assert found.hits[0].product_id == "grpc-1"
        assert found.hits[0].payload["title"] == "via grpc"
        with pytest.raises(grpc.RpcError) as info:
            stub.SearchPoints(
                store_pb2.SearchPointsRequest(vector=vector[:3].tobytes(), top_k=1),
                timeout=30,
                metadata=md,
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "16-d" in info.value.details()
        deleted = stub.DeletePoints(
            store_pb2.DeletePointsRequest(product_ids=["grpc-1"]), metadata=md
        )
        assert deleted.count == 1
        gone = stub.RetrievePoints(
            store_pb2.RetrievePointsRequest(product_ids=["grpc-1"]), metadata=md
        )
        assert list(gone.points) == []


def test_batching_is_tuned_at_run_time_without_a_restart(platform):
    """Last in this module: it redeploys the config with another user_config."""
    import asyncio

    from ray import serve

    from operations.serve import deploy
    from shared.serving.endpoints import grpc_targets_sync, release_handles

    async def info() -> dict:
        result = await serve.get_deployment_handle("TextEncoder", "text-encoder").info.remote()
        await release_handles()
        return result

    before = asyncio.run(info())
    config = platform.config
    for app in config["applications"]:
        if app["name"] == "text-encoder":
            app["deployments"][0]["user_config"] = {
                "max_batch_size": 7,
                "batch_wait_timeout_s": 0.01,
            }
    (target_before,) = grpc_targets_sync("text-encoder")
    deploy(config, timeout_s=120, progress=False)
    after = asyncio.run(info())
    assert before["batching"] != after["batching"]
    assert after["batching"] == {"max_batch_size": 7, "batch_wait_timeout_s": 0.01}
    # Same replica (same port), reconfigured in place.
    assert grpc_targets_sync("text-encoder") == [target_before]
    # `vitrine serve status` asks every replica what it runs with, over gRPC.
    from operations.serve import replica_infos

    ((target, replica),) = replica_infos("text-encoder")
    assert target == target_before and replica.application == "text-encoder"
    assert (replica.batching.max_batch_size, replica.batching.batch_wait_timeout_s) == (7, 0.01)
    assert replica.threads >= 1 and replica.cpu_budget > 0 and replica.replica_id
    assert replica.model_version == after["model_version"]


def test_vitrine_search_command(platform, capsys):
    """The CLI prints what the gateway returns; a filter narrows it; a bad filter is an error."""
    import json as json_module

    from cli.app import main

    assert (
        main(["search", "red shirt", "--gateway", platform.gateway, "--top-k", "3", "--json"]) == 0
    )
    hits = json_module.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3
    assert (
        main(["search", "red shirt", "--gateway", platform.gateway, "--filter", "baseColour=Blue"])
        == 0
    )
    table = capsys.readouterr().out
    assert "hits in" in table
    blue = {
        f"p{i}" for i in range(12) if i % 3 == 1
    }  # tests/support/tiny.py colours cycle Red, Blue, Black
    rows = [line for line in table.splitlines() if __import__("re").match(r" *\d+ +\d\.\d+ ", line)]
    shown = {line.split()[2] for line in rows}
    assert shown and shown <= blue
    assert main(["search", "x", "--gateway", platform.gateway, "--filter", "oops"]) == 2
    assert "expected key=value" in capsys.readouterr().err
    args = ["search", "red shirt", "--gateway", platform.gateway, "--top-k", "2", "--json"]
    assert main([*args, "--mode", "dense"]) == 0
    first = json_module.loads(capsys.readouterr().out)
    assert first["mode"] == "dense" and first["next_page_token"]
    assert main([*args, "--mode", "dense", "--page-token", first["next_page_token"]]) == 0
    second = json_module.loads(capsys.readouterr().out)
    assert not {h["product_id"] for h in first["hits"]} & {h["product_id"] for h in second["hits"]}
    assert main([*args, "--mode", "lexical"]) == 0
    assert json_module.loads(capsys.readouterr().out)["mode"] == "lexical"
    refine = ["--facet", "baseColour", "--group-by", "baseColour", "--like", "p1", "--not", "x"]
    assert main([*args, *refine, "--diversity", "0.5"]) == 0
    answer = json_module.loads(capsys.readouterr().out)
    assert sum(answer["facets"]["baseColour"].values()) == 11  # all but the example
    assert "p1" not in {h["product_id"] for h in answer["hits"]}
    assert len({h["payload"]["baseColour"] for h in answer["hits"]}) == len(answer["hits"])


def _search(stub, **fields) -> pb.SearchResponse:
    return stub.Search(pb.SearchRequest(**fields), timeout=30)


def test_text_queries_run_hybrid_by_default(stub):
    response = _search(stub, text="red shirt", top_k=5)
    assert response.mode == pb.SEARCH_MODE_HYBRID
    assert _search(stub, product_id="p3", top_k=3).mode == pb.SEARCH_MODE_DENSE


def test_lexical_search_matches_title_words_without_the_encoder(stub, ref):
    titles = {p.id: p.title.lower() for p in ref.products}  # "blue shirt 4"
    response = _search(stub, text="blue", top_k=12, mode=pb.SEARCH_MODE_LEXICAL)
    blue = {pid for pid, t in titles.items() if "blue" in t.split()}
    assert blue and set(_ids(response)) == blue  # every title with the word, and no other
    both = _search(stub, text="blue shirt", top_k=12, mode=pb.SEARCH_MODE_LEXICAL)
    assert len(both.hits) == 12 and both.hits[0].product_id in blue
    assert {h.product_id for h in both.hits[: len(blue)]} == blue  # both words beat one


def test_hybrid_is_the_rrf_of_the_dense_and_lexical_rankings_served(stub):
    """The tiny catalog's titles tie under BM25 ("blue shirt 1", "blue shirt 4", ...), and the
    engine fuses its own order of a tie: a product's lexical rank may be any of its tie's."""
    words, k = "blue dress", 10
    dense = _ids(_search(stub, text=words, top_k=12, mode=pb.SEARCH_MODE_DENSE))
    lexical = _search(stub, text=words, top_k=12, mode=pb.SEARCH_MODE_LEXICAL).hits
    hybrid = _search(stub, text=words, top_k=12, mode=pb.SEARCH_MODE_HYBRID, rrf_k=k)
    tie_ranks = {
        h.product_id: [r for r, o in enumerate(lexical) if o.score == pytest.approx(h.score)]
        for h in lexical
    }
    for hit in hybrid.hits:
        base = 1 / (k + dense.index(hit.product_id))
        possible = [base + 1 / (k + r) for r in tie_ranks.get(hit.product_id, [])] or [base]
        assert any(hit.score == pytest.approx(p, rel=1e-4) for p in possible), (hit, possible)
    assert len(hybrid.hits) == 12
    assert all(a.score >= b.score for a, b in zip(hybrid.hits, hybrid.hits[1:], strict=False))


def test_page_tokens_walk_one_ranking(stub, ref):
    whole = _ids(_search(stub, text="red shirt", top_k=9, mode=pb.SEARCH_MODE_DENSE))
    pages, token = [], ""
    for _ in range(3):
        page = _search(stub, text="red shirt", top_k=3, mode=pb.SEARCH_MODE_DENSE, page_token=token)
        pages += _ids(page)
        token = page.next_page_token
    assert pages == whole == ref.ranking(ref.text("red shirt"))[:9]
    last = _search(stub, text="red shirt", top_k=5, mode=pb.SEARCH_MODE_DENSE, offset=10)
    assert _ids(last) == ref.ranking(ref.text("red shirt"))[10:12] and not last.next_page_token
    with pytest.raises(grpc.RpcError) as e:
        _search(stub, text="blue shirt", top_k=3, mode=pb.SEARCH_MODE_DENSE, page_token=token)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "another query" in e.value.details()


def test_score_threshold_cuts_the_served_ranking(stub):
    full = _search(stub, text="red shirt", top_k=12, mode=pb.SEARCH_MODE_DENSE)
    cut = (full.hits[3].score + full.hits[4].score) / 2
    kept = _search(stub, text="red shirt", top_k=12, mode=pb.SEARCH_MODE_DENSE, score_threshold=cut)
    assert _ids(kept) == _ids(full)[:4]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"product_id": "p1", "text": "in black", "mode": pb.SEARCH_MODE_LEXICAL}, "no reference"),
        ({"text": "x", "offset": 995, "top_k": 10}, "deepest page"),
        ({"text": "x", "page_token": "garbage"}, "not a token"),
    ],
)
def test_bad_search_options_get_invalid_argument_or_resource_exhausted(stub, fields, words):
    with pytest.raises(grpc.RpcError) as e:
        _search(stub, **fields)
    assert e.value.code() in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert words in e.value.details()


def test_http_search_options_and_pages(platform):
    url = f"{platform.http}/v1/search"
    status, first, _ = request_json(
        url, json.dumps({"text": "red shirt", "top_k": 4, "mode": "lexical"}).encode()
    )
    assert status == 200 and first["mode"] == "SEARCH_MODE_LEXICAL", first
    pages = []
    for _ in range(2):  # dense: no two products score alike, so pages never overlap
        query = {"text": "red shirt", "top_k": 4, "mode": "SEARCH_MODE_DENSE"}
        if pages:
            query["page_token"] = pages[-1]["next_page_token"]
        status, body, _ = request_json(url, json.dumps(query).encode())
        assert status == 200, body
        pages.append(body)
    first_ids, second_ids = ([h["product_id"] for h in p["hits"]] for p in pages)
    assert len(set(first_ids + second_ids)) == 8
    status, body, _ = request_json(url, json.dumps({"text": "x", "mode": "fuzzy"}).encode())
    assert status == 400 and "mode" in body["error"]


def test_facets_count_the_top_candidates_and_group_by_keeps_one_per_value(stub, ref):
    response = _search(
        stub, text="red shirt", top_k=5, facets=["baseColour", "year"], mode=pb.SEARCH_MODE_DENSE
    )
    assert response.candidates == 12  # the whole tiny catalog is within the 200 candidates
    colours = {v.value: v.count for v in response.facets[0].values}
    assert response.facets[0].field == "baseColour" and colours == {"Red": 4, "Blue": 4, "Black": 4}
    assert len(response.facets[1].values) == 12
    assert _ids(response) == ref.ranking(ref.text("red shirt"))[:5]  # the page is unchanged
    grouped = _search(
        stub, text="red shirt", top_k=5, group_by="baseColour", mode=pb.SEARCH_MODE_DENSE
    )
    assert len(grouped.hits) == 3 and not grouped.next_page_token
    assert {h.payload["baseColour"] for h in grouped.hits} == {"Red", "Blue", "Black"}
    first_of_each = []
    for pid in ref.ranking(ref.text("red shirt")):
        colour = next(p.attributes["baseColour"] for p in ref.products if p.id == pid)
        if colour not in {c for _, c in first_of_each}:
            first_of_each.append((pid, colour))
    assert _ids(grouped) == [pid for pid, _ in first_of_each]


def test_more_and_less_like_these_products(stub, ref):
    like = _search(stub, positive_ids=["p4"], top_k=3)
    assert "p4" not in _ids(like)  # the example itself is never an answer
    expected = [pid for pid in ref.ranking(ref.vectors[4]) if pid != "p4"][:3]
    assert _ids(like) == expected
    unlike = _search(stub, product_id="p4", negative_ids=["p5"], top_k=11)
    assert "p5" not in _ids(unlike)
    with pytest.raises(grpc.RpcError) as e:
        _search(stub, text="shirt", positive_ids=["nope"])
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nope" in e.value.details()
    worded = _search(stub, text="shirt", negative_text="red", top_k=5, mode=pb.SEARCH_MODE_DENSE)
    assert len(worded.hits) == 5


def test_diversity_reorders_the_dense_ranking(stub, ref):
    plain = _search(stub, text="red shirt", top_k=6, mode=pb.SEARCH_MODE_DENSE)
    same = _search(stub, text="red shirt", top_k=6, mode=pb.SEARCH_MODE_DENSE, diversity=0.0)
    assert _ids(same) == _ids(plain)
    diverse = _search(stub, text="red shirt", top_k=6, mode=pb.SEARCH_MODE_DENSE, diversity=1.0)
    assert _ids(diverse)[0] == _ids(plain)[0] and _ids(diverse) != _ids(plain)


def test_http_facets_and_examples(platform):
    status, body, _ = request_json(
        f"{platform.http}/v1/search",
        json.dumps(
            {"text": "shirt", "top_k": 2, "facets": ["baseColour"], "negative_ids": ["p1"],
             "group_by": "baseColour"}
        ).encode(),
    )  # fmt: skip
    assert status == 200, body
    assert body["facets"][0]["field"] == "baseColour" and int(body["candidates"]) == 11
    assert sum(int(v["count"]) for v in body["facets"][0]["values"]) == 11
    assert len({h["payload"]["baseColour"] for h in body["hits"]}) == 2


def test_search_batch_answers_each_query_in_order(stub, ref):
    requests = [
        pb.SearchRequest(text="red shirt", top_k=3, mode=pb.SEARCH_MODE_DENSE),
        pb.SearchRequest(product_id="p7", top_k=2),
        pb.SearchRequest(text="blue", top_k=4, mode=pb.SEARCH_MODE_LEXICAL),
    ]
    reply = stub.SearchBatch(pb.SearchBatchRequest(requests=requests), timeout=30)
    assert [_ids(r) for r in reply.responses] == [
        _ids(stub.Search(q, timeout=30)) for q in requests
    ]
    assert _ids(reply.responses[0]) == ref.ranking(ref.text("red shirt"))[:3]
    bad = [*requests, pb.SearchRequest(top_k=3)]
    with pytest.raises(grpc.RpcError) as e:
        stub.SearchBatch(pb.SearchBatchRequest(requests=bad), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "query 3" in e.value.details()


def test_http_search_batch(platform):
    url = f"{platform.http}/v1/search/batch"
    body = {"requests": [{"text": "red shirt", "top_k": 2, "mode": "dense"}, {"product_id": "p2"}]}
    status, answer, _ = request_json(url, json.dumps(body).encode())
    assert status == 200, answer
    assert [len(r["hits"]) for r in answer["responses"]] == [2, 10]
    status, answer, _ = request_json(url, json.dumps({"requests": {}}).encode())
    assert status == 400 and "requests" in answer["error"]


def test_cutoffs_diversity_words_and_weights_over_grpc_and_http(stub, platform, ref):
    dense = pb.SEARCH_MODE_DENSE
    full = _search(stub, text="red shirt", top_k=12, mode=dense)
    cut = _search(stub, text="red shirt", top_k=12, mode=dense, adaptive_cutoff=True)
    assert 1 <= len(cut.hits) <= 12 and _ids(cut) == _ids(full)[: len(cut.hits)]
    assert cut.candidates == 12
    weighted = _search(stub, product_id="p4", text="in black", top_k=12, text_weight=0.0)
    image_only = _search(stub, product_id="p4", top_k=12)
    assert _ids(weighted) == _ids(image_only)  # weight 0: the reference alone
    away = _search(stub, text="shirt", negative_text="red", top_k=4, mode=dense)
    moved = ref.text("shirt") - 0.5 * ref.text("red")  # the query moved away from the words
    assert _ids(away) == ref.ranking(moved / np.linalg.norm(moved))[:4]
    url = f"{platform.http}/v1/search"
    for extra in (
        {"score_threshold": (full.hits[3].score + full.hits[4].score) / 2},
        {"adaptive_cutoff": True},
        {"diversity": 0.5},
        {"negative_text": "red"},
    ):
        body = {"text": "red shirt", "top_k": 12, "mode": "dense", **extra}
        status, answer, _ = request_json(url, json.dumps(body).encode())
        assert status == 200 and answer["hits"], (extra, answer)
        if "score_threshold" in extra:
            assert [h["product_id"] for h in answer["hits"]] == _ids(full)[:4]
    composed = {"product_id": "p4", "text": "in black", "top_k": 3, "text_weight": 0.5}
    status, answer, _ = request_json(url, json.dumps(composed).encode())
    assert status == 200 and len(answer["hits"]) == 3
    status, answer, _ = request_json(url, json.dumps({"text": "x", "text_weight": 0.5}).encode())
    assert status == 400 and "composed" in answer["error"]


def test_snapshot_and_restore_into_a_fresh_store_give_the_same_points_and_answers(
    platform, tmp_path, capsys
):
    """`vitrine snapshot` of the running store, `vitrine restore` into a fresh vector-store
    application (an empty edge folder) with a gateway of its own: the same points, versions and
    tombstones, and the same answers through both gateways."""
    import copy

    from cli.app import main
    from operations.indexing import proxy_address
    from operations.serve import deploy, internal_token
    from operations.store_access import RemoteStore
    from shared.serving.errors import RequestError
    from shared.vectorstore.base import Deletion, Point
    from tests.support.platform import add_gateways, wait_serving

    (store_app,) = (a for a in platform.config["applications"] if a["name"] == "vector-store")
    fresh = copy.deepcopy(store_app)
    fresh.update(name="vector-store-restored", route_prefix="/vector-store-restored")
    fresh["args"] = {**fresh["args"], "store_location": f"edge:{tmp_path / 'restored'}"}
    options = fresh["deployments"][0]["ray_actor_options"]
    options["num_cpus"] = 0  # its node role kept
    platform.config["applications"].append(fresh)  # the platform's teardown deletes it
    deploy(platform.config, timeout_s=300, progress=False)
    ((restored_gateway, _),) = add_gateways(
        platform, {"gateway-restored": {"vector_store_app": "vector-store-restored"}}
    ).values()

    address, token = proxy_address(), internal_token()
    live = RemoteStore(address, app_name="vector-store", token=token)
    vector = np.linspace(-1, 1, 16, dtype=np.float32)
    live.upsert([Point("snap-gone", vector, {"title": "deleted later"}, version=5)])
    live.delete([Deletion("snap-gone", 6)])

    path = tmp_path / "store.snapshot"
    assert main(["snapshot", str(path), "--address", address]) == 0
    assert "12 points and 1 tombstones" in capsys.readouterr().out
    args = ["restore", str(path), "--address", address, "--store-app", "vector-store-restored"]
    assert main(args) == 0
    assert "(12 written, 0 stale)" in capsys.readouterr().out
    assert main(args) == 1  # no longer empty
    assert "holds points already" in capsys.readouterr().err

    restored = RemoteStore(address, app_name="vector-store-restored", token=token)
    try:
        assert _whole(restored) == _whole(live)
        assert restored.upsert([Point("snap-gone", vector, {}, version=4)]).stale == 1
        with pytest.raises(RequestError, match="not a point id"):
            live.scroll("p1", 5, with_vectors=False, tombstones=False)
        with pytest.raises(RequestError, match="more than 1024"):
            live.scroll(None, 5000, with_vectors=False, tombstones=False)
    finally:
        live.close()
        restored.close()
    # Dense answers are the same, scores included. Lexical scores, and so hybrid rankings, may
    # differ: the live engine's BM25 statistics (document frequencies, lengths) still count the
    # points deleted above until it compacts its segments; a one-word query ranks alike.
    queries = [
        (pb.SearchRequest(text="red shirt", top_k=5, mode=pb.SEARCH_MODE_DENSE), True),
        (pb.SearchRequest(product_id="p4", text="in black", top_k=4), True),
        (pb.SearchRequest(text="blue", top_k=3, mode=pb.SEARCH_MODE_LEXICAL), False),
    ]
    with grpc.insecure_channel(platform.gateway) as a, grpc.insecure_channel(restored_gateway) as b:
        wait_serving(b)
        for query, scores in queries:
            answers = [pb_grpc.SearchServiceStub(c).Search(query, timeout=30) for c in (a, b)]
            want, got = (
                [(h.product_id, round(h.score, 5) * scores) for h in r.hits] for r in answers
            )
            assert got == want and len(want) >= 3, query


def _whole(store) -> tuple[dict, dict]:
    """Every point (payload, version, vector bytes) and tombstone (version) of a store."""
    points, dead = {}, {}
    for tombstones, into in ((False, points), (True, dead)):
        offset = None
        while True:
            page, offset = store.scroll(offset, 5, with_vectors=True, tombstones=tombstones)
            for p in page:
                into[p.product_id] = (
                    p.version if tombstones else (p.payload, p.version, p.vector.tobytes())
                )
            if offset is None:
                break
    return points, dead
