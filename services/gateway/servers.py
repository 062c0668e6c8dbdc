"""The gateway replica's own servers: the gRPC SearchService with API-key checks, and uvicorn for
HTTP, both in front of a `Gateway`."""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import socket
import ssl
from typing import TYPE_CHECKING, Any

import grpc
import uvicorn
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.gateway.security import ApiKeys, TLSFiles, scoped_queries
from shared.api.vitrine.search.v1 import search_pb2 as pb
from shared.conversions import search as conv
from shared.logs import serve_logger
from shared.observability import tracing
from shared.serving.errors import (
    DependencyError,
    RequestError,
    parse,
    status_of,
)
from shared.types import SearchQuery

if TYPE_CHECKING:
    from services.gateway.deployment import Gateway

log = serve_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["SearchService"].full_name


HEALTH_PREFIX = "/grpc.health.v1.Health/"
GRPC_THREADS = 64  # gRPC calls handled at once; each waits on the event loop for its query


# The scope each gRPC method needs; a method not listed (reflection) needs any valid key.
METHOD_SCOPES = {f"/{SERVICE_NAME}/Search": "search", f"/{SERVICE_NAME}/SearchBatch": "search"}


def _unwrap(exc: BaseException) -> BaseException:
    """The deployment's own exception inside Ray's wrapper; Ray's failures become UNAVAILABLE."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return cause
    if type(exc).__module__.startswith("ray.") and not hasattr(exc, "code"):
        return DependencyError(f"a backing service failed: {type(exc).__name__}: {exc}")
    return exc


def _uvicorn_tls(tls: TLSFiles) -> dict:
    """uvicorn's TLS options for the same files as the gRPC server's."""
    if not tls.enabled:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


class _AuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid API key (UNAUTHENTICATED) or without the scope of the
    method (PERMISSION_DENIED), before the servicer runs; health checks pass freely (probes)."""

    def __init__(self, keys: ApiKeys) -> None:
        self._keys = keys

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or details.method.startswith(HEALTH_PREFIX):
            return handler
        try:
            self._keys.authorize(
                details.invocation_metadata or (), METHOD_SCOPES.get(details.method)
            )
        except RequestError as e:
            log.info("denied %s: %s", details.method, e)
            wait_s = getattr(e, "retry_after_s", None)
            trailers = (("retry-after-ms", str(math.ceil(wait_s * 1000))),) if wait_s else ()
            return _refusal(handler, e.code, str(e), trailers)
        return handler


def _refusal(
    handler: grpc.RpcMethodHandler,
    code: grpc.StatusCode,
    message: str,
    trailers: tuple[tuple[str, str], ...] = (),
):
    """A handler of the same shape as `handler` that aborts with `code` (and `trailers`)."""

    def refuse(request_or_iterator, context: grpc.ServicerContext):
        if trailers:
            context.set_trailing_metadata(trailers)
        context.abort(code, message)

    kind = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    return make(
        refuse,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class _HTTPServer(uvicorn.Server):
    """uvicorn inside the replica's event loop; Ray owns the process's signals. Its socket is
    bound with SO_REUSEPORT, as the gRPC server's: several gateway replicas on one host share
    the public ports and the kernel spreads connections over them."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    async def serve(self, sockets=None):
        if sockets is None:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.config.host, self.config.port))
            except OSError:
                sock.close()
                raise
            sockets = [sock]
        await super().serve(sockets=sockets)


def _queries(request):
    """The query of a SearchRequest, or the queries of a SearchBatchRequest (naming the bad one).

    Raises:
        RequestError: a malformed request.
    """
    if isinstance(request, pb.SearchRequest):
        return parse(conv.request_from_proto, request)
    return parse(conv.batch_request_from_proto, request)


class _SearchServicer:
    """SearchService over raw request bytes: grpcio answers a request its deserializer cannot
    parse with INTERNAL, so the servicer parses it and answers INVALID_ARGUMENT instead."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def handler(self) -> grpc.GenericRpcHandler:
        search: grpc.RpcMethodHandler[bytes, pb.SearchResponse] = (
            grpc.unary_unary_rpc_method_handler(
                self.Search, response_serializer=pb.SearchResponse.SerializeToString
            )
        )
        batch: grpc.RpcMethodHandler[bytes, pb.SearchBatchResponse] = (
            grpc.unary_unary_rpc_method_handler(
                self.SearchBatch, response_serializer=pb.SearchBatchResponse.SerializeToString
            )
        )
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME, {"Search": search, "SearchBatch": batch}
        )

    def Search(self, raw: bytes, context: grpc.ServicerContext):  # noqa: N802
        """Runs on a server thread; the query runs on the replica's event loop
        (Gateway.search_from_thread)."""
        return self._serve(pb.SearchRequest, raw, context)

    def SearchBatch(self, raw: bytes, context: grpc.ServicerContext):  # noqa: N802
        return self._serve(pb.SearchBatchRequest, raw, context)

    def _serve(self, message_type, raw: bytes, context: grpc.ServicerContext):
        try:
            request = message_type.FromString(raw)
        except DecodeError as e:
            name = message_type.DESCRIPTOR.name
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a {name}: {e}")
        answer, message = self._answer(request, context)
        if isinstance(answer, grpc.StatusCode):
            context.abort(answer, message)
        return answer

    def _answer(self, request, context) -> tuple:
        """(response, None), or (status code, message)."""
        try:
            queries = _queries(request)
            found = scoped_queries(
                self._gateway.keys,
                context.invocation_metadata() or (),
                [queries] if isinstance(queries, SearchQuery) else queries,
            )
            single = isinstance(queries, SearchQuery)
            result = self._gateway.search_from_thread(
                found[0] if single else found,
                timeout_s=context.time_remaining(),
                api="grpc" if single else "grpc_batch",
                trace=tracing.extract(context.invocation_metadata()),
            )
            if isinstance(result, list):
                return conv.batch_response_to_proto(result), None
            return conv.response_to_proto(result), None
        except TimeoutError as e:
            return grpc.StatusCode.DEADLINE_EXCEEDED, str(e)
        except RequestError as e:
            return e.code, str(e)
        except Exception as e:
            code, message = status_of(e)
            if code == grpc.StatusCode.INTERNAL:
                log.exception("search failed")
            return code, message


def start_grpc_server(
    servicer: _SearchServicer,
    health_servicer,
    port: int,
    *,
    keys: ApiKeys,
    tls: TLSFiles,
    max_request_bytes: int,
) -> grpc.Server:
    """The public gRPC server: SearchService, health and reflection, started."""
    # A thread pool server whose handlers run each query on the replica's event loop: with
    # grpc.aio's server in that loop some calls never reached the servicer and waited out the
    # caller's deadline (docs/RELIABILITY.md, "Known issues").
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=GRPC_THREADS, thread_name_prefix="gateway-grpc"
        ),
        interceptors=[_AuthInterceptor(keys)] if keys.enabled else [],
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.so_reuseport", 1),
        ],
    )
    server.add_generic_rpc_handlers((servicer.handler(),))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            SERVICE_NAME,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    address = f"[::]:{port}"
    if tls.enabled:
        server.add_secure_port(address, tls.server_credentials())
    else:
        server.add_insecure_port(address)
    server.start()
    return server
