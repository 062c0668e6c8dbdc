"""Request limits without a cluster: the pixel budget read from image headers (shared transforms,
the image encoder's decode path, the gateway's validation) and the gateway's HTTP server limits
(a read deadline against slowloris, a connection cap) on a real uvicorn server and raw sockets."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import uvicorn

from operations.ports import free_port
from services.gateway.http import server_limits
from services.gateway.validation import Limits, validate
from services.image_encoder import deployment as image_deployment
from services.image_encoder.deployment import ImageLimits, decode_request
from shared.models.transforms import ImageDecodeError, PixelBudgetError, request_pixels
from shared.serving.errors import LimitError, RequestError
from shared.types import SearchQuery
from tests.support.fuzzing import png_header
from tests.support.slow_client import (
    SLOW_BODY,
    SLOW_HEADERS,
    connect,
    response,
    trickle_until_closed,
)
from tests.support.tiny import png_bytes

# --- pixel budget -----------------------------------------------------------------------------


def test_request_pixels_sums_headers_without_decoding():
    images = [png_header(6000, 6000)] * 4  # undecodable bodies: only headers are read
    assert request_pixels(images, budget=144_000_000, max_bytes=2**20) == 144_000_000
    with pytest.raises(PixelBudgetError, match="144,000,000 pixels, more than the 100,000,000"):
        request_pixels(images, budget=100_000_000, max_bytes=2**20)


def test_request_pixels_names_the_image_it_cannot_read():
    with pytest.raises(ImageDecodeError, match="image 1: cannot decode") as info:
        request_pixels([png_bytes(0), b"not an image"], budget=10**9, max_bytes=2**20)
    assert not isinstance(info.value, PixelBudgetError)
    with pytest.raises(ImageDecodeError, match="image 0: image is .* bytes, more than"):
        request_pixels([png_bytes(0)], budget=10**9, max_bytes=10)


LIMITS = ImageLimits(
    max_images=64, max_image_bytes=2**20, max_image_pixels=40_000_000, max_request_pixels=10**8
)


def test_encoder_refuses_a_batch_over_the_budget_before_decoding_any(monkeypatch):
    decoded = []
    monkeypatch.setattr(image_deployment, "decode_image", lambda *a, **k: decoded.append(1))
    near_limit = [png_header(6000, 6000)] * 3  # 36 MP each, under the 40 MP per image
    with pytest.raises(LimitError, match="108,000,000 pixels") as info:
        decode_request(near_limit, LIMITS)
    assert info.value.code.name == "RESOURCE_EXHAUSTED"
    assert decoded == []


def test_encoder_decodes_a_batch_within_the_budget():
    images = decode_request([png_bytes(1), png_bytes(2, size=50)], LIMITS)
    assert [im.size for im in images] == [(40, 40), (50, 50)]
    # Under the budget, a header that lies about its body fails when decoded, by index.
    with pytest.raises(RequestError, match="image 1: cannot decode image") as info:
        decode_request([png_bytes(1), png_header(100, 100)], LIMITS)
    assert not isinstance(info.value, LimitError)


GATEWAY = Limits(
    default_top_k=10, max_top_k=50, max_text_chars=20, max_image_bytes=2**20,
    max_query_pixels=1_000_000,
)  # fmt: skip


def test_gateway_refuses_a_reference_image_over_its_pixel_budget():
    with pytest.raises(LimitError, match="1,440,000 pixels, more than the 1,000,000"):
        validate(SearchQuery(text="in black", image=png_header(1200, 1200)), GATEWAY)
    assert validate(SearchQuery(image=png_header(1000, 1000)), GATEWAY).top_k == 10
    with pytest.raises(RequestError, match="cannot decode image") as info:
        validate(SearchQuery(image=b"\x89PNG not really"), GATEWAY)
    assert not isinstance(info.value, LimitError)


# --- HTTP server limits -----------------------------------------------------------------------


async def _app(scope, receive, send):
    """Reads the whole body, waits `?wait=S` seconds, answers 200 with the body's size."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    query = scope["query_string"].decode()
    if query.startswith("wait="):
        await asyncio.sleep(float(query[5:]))
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def http_server(request):
    """A uvicorn server on a thread with the gateway's limits (params: read timeout, cap)."""
    read_timeout_s, max_connections = request.param
    port = free_port()
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        **server_limits(read_timeout_s=read_timeout_s, max_connections=max_connections),
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.parametrize("http_server", [(0.5, 100)], indirect=True)
@pytest.mark.parametrize("trickled", [SLOW_HEADERS, SLOW_BODY], ids=["headers", "body"])
def test_a_request_that_trickles_in_is_cut_off(http_server, trickled):
    with connect(http_server) as sock:
        received = trickle_until_closed(sock, trickled)
    assert b"200" not in received  # closed, not answered


@pytest.mark.parametrize("http_server", [(0.3, 100)], indirect=True)
def test_the_deadline_covers_reading_not_answering_nor_idle_keep_alive(http_server):
    """A request that arrives at once is answered even when the answer takes longer than the
    read deadline, and the connection then serves another request."""
    with connect(http_server) as sock:
        for wait in (0.6, 0):
            sock.sendall(
                f"POST /?wait={wait} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".encode()
            )
            answer = response(sock)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"3"), answer


@pytest.mark.parametrize("http_server", [(600, 2)], indirect=True)
def test_past_the_connection_cap_requests_get_503(http_server):
    held = [connect(http_server) for _ in range(2)]
    for sock in held:  # each holds a connection with a request still arriving
        sock.sendall(b"GET / HTTP/1.1\r\n")
    try:
        with connect(http_server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert response(sock).startswith(b"HTTP/1.1 503")
    finally:
        held.pop().close()
    give_up = time.monotonic() + 60
    while True:  # served again once the server has seen a held connection close
        with connect(http_server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            if response(sock).startswith(b"HTTP/1.1 200"):
                break
        assert time.monotonic() < give_up, "still 503 after a held connection closed"
        time.sleep(0.05)
    held.pop().close()
