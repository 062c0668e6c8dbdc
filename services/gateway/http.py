"""The gateway's HTTP side: the limits of its server (uvicorn) that uvicorn does not have itself,
and reading a request body and its JSON.

uvicorn 0.54 bounds only the idle time between requests (`timeout_keep_alive`): a client that
sends its request a byte every few seconds (slowloris) keeps the connection, its buffers and
its place among the server's connections for as long as it likes. `ReadDeadlineProtocol` closes
a connection whose request has not fully arrived (headers and body) within `read_timeout_s` of
its first byte, or of the connection's opening for the first request. The connection cap is
uvicorn's `limit_concurrency`: a request arriving while the cap is reached is answered 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.conversions import search as conv
from shared.logs import serve_logger
from shared.observability import tracing
from shared.serving.errors import HTTP_STATUS, LimitError, RequestError, parse, status_of

log = serve_logger(__name__)


class ReadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on reading each request.

    httptools is what uvicorn picks by default when installed (uvicorn[standard], which Ray Serve
    requires); naming it keeps the deadline's hooks (`on_message_begin`/`_complete`) in force.
    """

    read_timeout_s: float = 30.0

    # Narrower than asyncio.Protocol's BaseTransport, as in uvicorn's own signature (and ignore).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_too_slow)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_too_slow(self) -> None:
        self._read_deadline = None
        if not self.transport.is_closing():
            log.info(
                "closing an HTTP connection from %s: its request did not arrive within %g s",
                ":".join(map(str, self.client)) if self.client else "?",
                self.read_timeout_s,
            )
            self.transport.close()


def server_limits(*, read_timeout_s: float, max_connections: int) -> dict:
    """uvicorn.Config options for a request read deadline and a cap of `max_connections`."""
    protocol = type(
        "ReadDeadlineProtocol", (ReadDeadlineProtocol,), {"read_timeout_s": read_timeout_s}
    )
    # uvicorn answers 503 when its open connections, the asking one included, reach
    # limit_concurrency (uvicorn/protocols/http/httptools_impl.py, on_headers_complete): + 1 so
    # that `max_connections` connections are served.
    return {"http": protocol, "limit_concurrency": max_connections + 1}


def _short_mode(data: Any) -> Any:
    """`"mode": "hybrid"` accepted for `"SEARCH_MODE_HYBRID"` (the JSON mapping wants the enum
    value's full name)."""
    if isinstance(data, dict) and isinstance(data.get("mode"), str):
        mode = data["mode"]
        if mode.lower() in ("dense", "lexical", "hybrid"):
            return {**data, "mode": f"SEARCH_MODE_{mode.upper()}"}
    return data


def search_message(body: bytes, *, batch: bool):
    """The SearchRequest (or, with `batch`, SearchBatchRequest) in a JSON body.

    Raises:
        json.JSONDecodeError, UnicodeDecodeError, json_format.ParseError: not such a message.
    """
    data = json.loads(body or b"{}")
    if not isinstance(data, dict):
        raise json_format.ParseError("expected a JSON object")
    if not batch:
        return json_format.ParseDict(_short_mode(data), pb.SearchRequest())
    requests = data.get("requests")
    if not isinstance(requests, list):
        raise json_format.ParseError('expected {"requests": [SearchRequest, ...]}')
    return json_format.ParseDict(
        {**data, "requests": [_short_mode(r) for r in requests]}, pb.SearchBatchRequest()
    )


async def search_endpoint(
    request: Request, gateway, max_bytes: int, *, batch: bool, scope
) -> Response:
    """POST /v1/search (SearchRequest's JSON form) or /v1/search/batch: the answer's JSON, or
    {"error", "code"} with the HTTP status of the gRPC code. `scope` sets the catalog of each
    query under the caller's key (security.scoped_queries)."""
    trace = tracing.extract(request.headers.items())  # the caller's traceparent, if any
    try:
        message = search_message(await read_body(request, max_bytes), batch=batch)
        reply: Message
        if batch:
            queries = scope(parse(conv.batch_request_from_proto, message))
            reply = conv.batch_response_to_proto(
                await gateway.search_many(queries, api="http_batch", trace=trace)
            )
        else:
            (query,) = scope([parse(conv.request_from_proto, message)])
            reply = conv.response_to_proto(await gateway.search(query, api="http", trace=trace))
        return JSONResponse(json_format.MessageToDict(reply, preserving_proto_field_name=True))
    except (json_format.ParseError, json.JSONDecodeError, UnicodeDecodeError) as e:
        return JSONResponse({"error": f"bad request body: {e}"}, 400)
    except TimeoutError as e:
        return JSONResponse({"error": str(e) or "deadline exceeded"}, 504)
    except Exception as e:
        code, problem = status_of(e)
        if code == grpc.StatusCode.INTERNAL:
            log.exception("search failed")
        return JSONResponse({"error": problem, "code": code.name}, HTTP_STATUS.get(code, 500))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (LimitError) past `limit` bytes without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise LimitError(f"request body of {declared} bytes exceeds the limit of {limit}")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise LimitError(f"request body exceeds the limit of {limit} bytes")
    except ClientDisconnect:  # the read deadline (http.py) closed it, or the client left
        raise RequestError("the connection closed before the whole body arrived") from None
    return bytes(body)
