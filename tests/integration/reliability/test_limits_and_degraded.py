"""The gateway's limits and degraded modes, on applications of their own beside the platform's:
an HTTP client that trickles its request, connections past the cap, images whose headers promise
more pixels than a request may decode, the gateway's own deadline with a dependency frozen, a
text encoder that starts serving another model, and the vector store cut off.

Each test writes its outcomes to $VITRINE_RELIABILITY_REPORT when set (docs/RELIABILITY.md).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import signal
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from operations.local_ray import internal_metadata
from operations.ports import free_port
from operations.serve import deploy
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2 as ie_pb
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2_grpc as ie_grpc
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.api.vitrine.search.v1 import search_pb2_grpc as pb_grpc
from shared.serving.endpoints import grpc_targets_sync
from tests.support.fuzzing import Tally, png_header
from tests.support.http_api import request_json
from tests.support.platform import wait_serving
from tests.support.slow_client import (
    SLOW_BODY,
    SLOW_HEADERS,
    connect,
    is_closed,
    response,
    trickle_until_closed,
)
from tests.support.workers import until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "vitrine.search.v1.SearchService"
READ_TIMEOUT_S, MAX_CONNECTIONS, GATEWAY_DEADLINE_S = 2, 3, 2


def _app(platform, name: str, copy_of: str, **args) -> dict:
    """A copy of one of the platform's applications under another name, claiming no CPU."""
    (app,) = (a for a in platform.config["applications"] if a["name"] == copy_of)
    app = copy.deepcopy(app)
    app.update(name=name, route_prefix=f"/{name}")
    app["args"] = {**app["args"], **args}
    options = app["deployments"][0]["ray_actor_options"]
    options["num_cpus"] = 0  # its node role kept
    return app


def _gateway(platform, name: str, **args) -> tuple[dict, str, str]:
    grpc_port, http_port = free_port(), free_port()
    app = _app(platform, name, "gateway", grpc_port=grpc_port, http_port=http_port, **args)
    return app, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http_port}"


def _remove(platform, names: set[str]) -> None:
    from ray import serve

    platform.config["applications"] = [
        a for a in platform.config["applications"] if a["name"] not in names
    ]
    for name in names & set(serve.status().applications):
        serve.delete(name, _blocking=False)
    until(
        lambda: not names & set(serve.status().applications),
        timeout_s=300,
        what=f"{sorted(names)} to be deleted",
    )


@pytest.fixture(scope="module")
def side(platform, tmp_path_factory):
    """name -> (gRPC address, HTTP address) of the gateways beside the platform's:
    gateway-limits (short read timeout, 3 connections, a 2 s deadline), gateway-swap (its text
    encoder is text-encoder-swap, on the platform's bundle for now), gateway-cut (its vector
    store is vector-store-cut, a store of its own)."""
    root = tmp_path_factory.mktemp("side")
    limits, *limits_at = _gateway(
        platform,
        "gateway-limits",
        http_read_timeout_s=READ_TIMEOUT_S,
        http_max_connections=MAX_CONNECTIONS,
        request_timeout_s=GATEWAY_DEADLINE_S,
    )
    swap, *swap_at = _gateway(platform, "gateway-swap", text_encoder_app="text-encoder-swap")
    cut, *cut_at = _gateway(platform, "gateway-cut", vector_store_app="vector-store-cut")
    apps = [
        limits,
        swap,
        cut,
        _app(platform, "text-encoder-swap", "text-encoder"),
        _app(platform, "vector-store-cut", "vector-store", store_location=f"edge:{root}/cut"),
    ]
    platform.config["applications"] += apps
    deploy(platform.config, timeout_s=300, progress=False)
    addresses = {"gateway-limits": limits_at, "gateway-swap": swap_at, "gateway-cut": cut_at}
    for address, _ in addresses.values():
        with grpc.insecure_channel(address) as channel:
            wait_serving(channel, timeout_s=120)
    yield addresses
    _remove(platform, {a["name"] for a in apps})


def _health(address: str, service: str = "") -> str:
    with grpc.insecure_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=10
        )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)


def _http(url: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON answer) of the HTTP API, for a caller that allows 60 s."""
    status, answer, _ = request_json(url, body, timeout_s=60)
    return status, answer


def _search(address: str, request: pb.SearchRequest) -> tuple[str, str]:
    """(status code name, details) of a Search with a generous caller deadline."""
    with grpc.insecure_channel(address) as channel:
        try:
            pb_grpc.SearchServiceStub(channel).Search(request, timeout=60)
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""


# --- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trickled", [SLOW_HEADERS, SLOW_BODY], ids=["headers", "body"])
def test_an_http_request_trickling_in_is_cut_off(side, trickled):
    """A request sent a byte every 50 ms (25 s of headers, or a 100 KB body) never completes
    within the gateway's 2 s read timeout: the gateway closes the connection without answering,
    and answers the next client."""
    port = int(side["gateway-limits"][1].split(":")[1])
    tally = Tally("HTTP request trickled in (slowloris)")
    with connect(port) as sock:
        received = trickle_until_closed(sock, trickled)
    assert b"HTTP/1.1" not in received
    tally.add(f"{'headers' if trickled is SLOW_HEADERS else 'body'}: closed without an answer")
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert response(sock).startswith(b"HTTP/1.1 200")
    tally.write(read_timeout_s=READ_TIMEOUT_S)


def test_http_connections_past_the_cap_get_503(side):
    """With 3 connections held open (requests still arriving), a 4th client's request gets
    503. The held requests are themselves cut after the read timeout, so an attempt where that
    happened first proves nothing and is made again."""
    port = int(side["gateway-limits"][1].split(":")[1])
    tally = Tally("HTTP connections past the cap")
    for _ in range(5):
        held = [connect(port) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            with connect(port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = response(sock)
            if answer.startswith(b"HTTP/1.1 503"):
                tally.add("503")
                break
            tally.add("held connections cut first (attempt made again)")
            assert any(is_closed(s) for s in held), f"over the cap and answered: {answer[:60]}"
        finally:
            for sock in held:
                sock.close()
    else:
        raise AssertionError("the held connections were always cut before the 4th request")
    tally.write(max_connections=MAX_CONNECTIONS)


def test_images_over_the_pixel_budget_are_refused_before_decoding(platform):
    """Headers that promise 36 MP each (under the 40 MP per image) and carry no pixel data: a
    request whose images sum past the encoder's 160 MP budget is RESOURCE_EXHAUSTED, while one
    under it fails only when the first image is decoded (INVALID_ARGUMENT), so the budget was
    checked first. A query's reference image past the gateway's 40 MP is refused there."""
    tally = Tally("pixel budget (headers only, before decoding)")
    (target,) = grpc_targets_sync("image-encoder")
    md = internal_metadata("image-encoder")
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)]) as ch:
        stub = ie_grpc.ImageEncoderServiceStub(ch)
        for count, code, words in [
            (5, grpc.StatusCode.RESOURCE_EXHAUSTED, "180,000,000 pixels"),
            (64, grpc.StatusCode.RESOURCE_EXHAUSTED, "2,304,000,000 pixels"),
            (4, grpc.StatusCode.INVALID_ARGUMENT, "image 0: cannot decode image"),
        ]:
            request = ie_pb.EmbedImagesRequest(images=[png_header(6000, 6000)] * count)
            with pytest.raises(grpc.RpcError) as info:
                stub.EmbedImages(request, metadata=md, timeout=60)
            assert info.value.code() == code and words in info.value.details(), info.value
            tally.add(f"EmbedImages {count} x 36 MP: {code.name}")
    big = png_header(7000, 7000)  # 49 MP
    for request in (pb.SearchRequest(image=big), pb.SearchRequest(image=big, text="in black")):
        code, details = _search(platform.gateway, request)
        assert code == "RESOURCE_EXHAUSTED" and "49,000,000 pixels" in details, (code, details)
        tally.add(
            f"Search with a 49 MP reference ({'composed' if request.text else 'image'}): {code}"
        )
    status, body = _http(
        f"{platform.http}/v1/search", {"image": base64.b64encode(big).decode(), "text": "in black"}
    )
    assert status == 413 and "49,000,000 pixels" in body["error"], (status, body)
    tally.add(f"HTTP /v1/search with a 49 MP reference: {status}")
    tally.write()


def test_the_gateways_own_deadline_fires_while_a_dependency_is_frozen(side):
    """The text encoder's replica is stopped (SIGSTOP) while gateway-limits (request_timeout_s
    2) answers a text query from a caller that allows 60 s: the gateway answers
    DEADLINE_EXCEEDED itself, saying its own deadline passed; over HTTP, 504."""
    import ray

    grpc_at, http_at = side["gateway-limits"]
    (name,) = [
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::text-encoder#TextEncoder#")
    ]
    actor = ray.get_actor(name, namespace="serve")
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=60)
    tally = Tally("gateway's own deadline, text encoder frozen")
    os.kill(pid, signal.SIGSTOP)
    try:
        code, details = _search(grpc_at, pb.SearchRequest(text="red shirt", top_k=3))
        status, body = _http(f"http://{http_at}/v1/search", {"text": "blue dress"})
    finally:
        os.kill(pid, signal.SIGCONT)
    expected = f"the gateway's deadline of {GATEWAY_DEADLINE_S} s (request_timeout_s) passed"
    assert code == "DEADLINE_EXCEEDED" and expected in details, (code, details)
    assert status == 504 and expected in body["error"], (status, body)
    tally.add(f"gRPC {code}")
    tally.add(f"HTTP {status}")
    tally.write(gateway_deadline_s=GATEWAY_DEADLINE_S, caller_deadline_s=60)
    assert _search(grpc_at, pb.SearchRequest(text="red shirt", top_k=3))[0] == "OK"


# --- degraded modes ----------------------------------------------------------------------------


def _unready(http_at: str, words: str) -> dict:
    """/healthz once it reports a problem containing `words` (the dependency check has run)."""
    answers = []

    def unready() -> bool:
        answers.append(_http(f"http://{http_at}/healthz"))
        status, body = answers[-1]
        return status == 503 and words in (body.get("problem") or "")

    until(unready, timeout_s=180, what=f"/healthz to report {words!r}: {answers[-1:]}")
    return answers[-1][1]


def _until_mismatch(ask, *, timeout_s: float = 60) -> list[tuple]:
    """Answers of `ask()` until one names the other model; each must be UNAVAILABLE (503)."""
    answers: list[tuple] = []
    give_up = time.monotonic() + timeout_s
    while not answers or "vitrine-another0000" not in json.dumps(answers[-1]):
        assert time.monotonic() < give_up, f"no mismatch named, last answers {answers[-3:]}"
        answers.append(ask())
        assert answers[-1][0] in ("UNAVAILABLE", 503), answers[-1]
        time.sleep(0.2)
    return answers


def test_a_text_encoder_serving_another_model_makes_the_gateway_unavailable(platform, side):
    """gateway-swap serves (control), then its text encoder is redeployed with a bundle of
    another id: its gRPC health and /healthz go down naming both models, and queries get
    UNAVAILABLE with the mismatch in words, over gRPC and HTTP; liveness stays SERVING."""
    grpc_at, http_at = side["gateway-swap"]
    assert _search(grpc_at, pb.SearchRequest(text="red shirt", top_k=3))[0] == "OK"
    assert _http(f"http://{http_at}/healthz")[0] == 200
    other = platform.bundle.parent / "other-bundle"
    shutil.copytree(platform.bundle, other, dirs_exist_ok=True)
    manifest = json.loads((other / "manifest.json").read_text())
    served, manifest["bundle_id"] = manifest["bundle_id"], "vitrine-another0000"
    (other / "manifest.json").write_text(json.dumps(manifest))
    for app in platform.config["applications"]:
        if app["name"] == "text-encoder-swap":
            app["args"]["bundle_path"] = str(other)
    deploy(platform.config, timeout_s=300, progress=False)
    body = _unready(http_at, "different models")
    assert served in body["problem"] and "vitrine-another0000" in body["problem"]
    assert _health(grpc_at) == _health(grpc_at, SERVICE) == "NOT_SERVING"
    assert _health(grpc_at, "vitrine.liveness") == "SERVING"
    tally = Tally("text encoder serving another model")
    # Each answer is UNAVAILABLE; the first ones may name the replaced replica's closed port
    # (the gateway's target list follows Serve's every 2 s) before the mismatch shows.
    text = pb.SearchRequest(text="red shirt", top_k=3)
    answers = _until_mismatch(lambda: _search(grpc_at, text))
    assert served in answers[-1][1]
    tally.add(f"gRPC text query: {answers[-1][0]}")
    answers = _until_mismatch(lambda: _http(f"http://{http_at}/v1/search", {"text": "blue"}))
    tally.add(f"HTTP text query: {answers[-1][0]}")
    # A query that needs no text encoder still works: only what the mismatch touches fails.
    assert _search(grpc_at, pb.SearchRequest(product_id="p3", top_k=3))[0] == "OK"
    tally.add("gRPC product query: OK")
    tally.write(health="NOT_SERVING", healthz=503, liveness="SERVING")


def test_the_store_cut_off_makes_the_gateway_unready_and_answer_503(platform, side):
    """gateway-cut serves (control: /healthz 200, an HTTP search 200), then its vector store
    application is deleted: /healthz 503 with the problem, gRPC health NOT_SERVING (liveness
    SERVING), HTTP searches 503 and gRPC searches UNAVAILABLE."""
    from ray import serve

    grpc_at, http_at = side["gateway-cut"]
    assert _http(f"http://{http_at}/healthz")[0] == 200
    status, _ = _http(f"http://{http_at}/v1/search", {"text": "red shirt"})
    assert status == 200
    serve.delete("vector-store-cut")
    platform.config["applications"] = [
        a for a in platform.config["applications"] if a["name"] != "vector-store-cut"
    ]
    _unready(http_at, "not answering")
    assert _health(grpc_at) == _health(grpc_at, SERVICE) == "NOT_SERVING"
    assert _health(grpc_at, "vitrine.liveness") == "SERVING"
    tally = Tally("vector store cut off from the gateway")
    status, body = _http(f"http://{http_at}/v1/search", {"text": "red shirt"})
    assert status == 503 and body.get("code") == "UNAVAILABLE" and body["error"], (status, body)
    tally.add(f"HTTP search: {status}")
    code, details = _search(grpc_at, pb.SearchRequest(text="red shirt", top_k=3))
    assert code == "UNAVAILABLE" and details, (code, details)
    tally.add(f"gRPC search: {code}")
    tally.write(healthz=503, health="NOT_SERVING", liveness="SERVING")
    with grpc.insecure_channel(platform.gateway) as channel:  # the platform's own is untouched
        wait_serving(channel)
