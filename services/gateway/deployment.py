"""The gateway deployment: the public search API over gRPC and HTTP/JSON.

The replica runs its own servers: a threaded grpcio server on `grpc_port` (SearchService,
grpc.health.v1.Health, server reflection) and uvicorn on `http_port` (the search page on `GET /`,
`POST /v1/search` with the JSON form of SearchRequest, `GET /v1/info`, `GET /healthz`), because
Serve's gRPC proxy neither passes the caller's deadline to the deployment nor serves the standard
health and reflection services.
Several replicas on one node share the ports (SO_REUSEPORT). The encoders and fusion are called
and the vector store over gRPC at the targets Serve publishes (shared.serving.clients).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from ray import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from services.gateway.health import DependencyHealth
from services.gateway.http import search_endpoint, server_limits
from services.gateway.observe import QueryObserver
from services.gateway.search import run_search
from services.gateway.security import ApiKeys, TLSFiles, scoped_queries
from services.gateway.servers import (
    _HTTPServer,
    _SearchServicer,
    _unwrap,
    _uvicorn_tls,
    start_grpc_server,
)
from services.gateway.slots import ModelSlot
from services.gateway.validation import Limits, validate
from shared.logs import serve_logger
from shared.observability.tracing import TracingConfig
from shared.observability.tracing import setup as trace_setup
from shared.serving.apps import GATEWAY_DEPLOYMENT
from shared.serving.auth import InternalToken
from shared.serving.errors import (
    HTTP_STATUS,
    DependencyError,
    LimitError,
    RequestError,
)
from shared.serving.ray_fixes import bind_replica_ports_alone
from shared.types import SearchMode, SearchQuery, SearchResult

log = serve_logger(__name__)

SEARCH_PAGE = (Path(__file__).parent / "static" / "index.html").read_text(encoding="utf-8")
LOOP_GRACE_S = 2.0
MAX_BATCH_QUERIES = 64  # queries in one SearchBatch call


def _load_keys(api_keys: ApiKeys | None, api_keys_file: str | None, *, require: bool) -> ApiKeys:
    """The replica's API keys: those passed, and the key file's, read here on the node that
    mounts it (a bad file fails the replica with its reason).

    Raises:
        ValueError: `require` and no key at all.
    """
    keys = (api_keys or ApiKeys()).merged(ApiKeys.load(env_text=None, file=api_keys_file))
    if require and not keys.enabled:
        raise ValueError(
            "production gateway without API keys (the key file holds none): refusing to "
            "start open; set keys, or VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED=true"
        )
    return keys


def _security(keys: ApiKeys, tls: TLSFiles) -> str:
    """How callers are let in, for the start-up log."""
    transport = "mTLS" if tls.client_ca_file else "TLS" if tls.enabled else "plaintext (no TLS)"
    if keys.enabled:
        return f"{transport}; API keys required ({', '.join(keys.names)})"
    return f"{transport}; no API keys configured: every caller is let in"


def _uvicorn_config(
    app, port: int, *, tls: TLSFiles, read_timeout_s: float, max_connections: int
) -> uvicorn.Config:
    """uvicorn serving `app` (every path, GET and POST) on `port`, with the gRPC server's TLS."""
    return uvicorn.Config(
        Starlette(routes=[Route("/{path:path}", app, methods=["GET", "POST"])]),
        host="0.0.0.0",
        port=port,
        lifespan="off",
        # No logging config of its own: uvicorn's dictConfig closes every existing handler,
        # Serve's buffered file handler among them, and the replica's log went silent after
        # its constructor (the query log, docs/OBSERVABILITY.md, was lost).
        log_config=None,
        log_level="warning",
        access_log=False,
        **server_limits(read_timeout_s=read_timeout_s, max_connections=max_connections),
        **_uvicorn_tls(tls),
    )


@serve.deployment(name=GATEWAY_DEPLOYMENT)
class Gateway:
    """Validates queries, fans out to the encoders, fuses, searches, and answers."""

    # Serve awaits an async constructor (a replica starts when it returns); mypy allows only
    # `-> None` on __init__, and an async def returns a coroutine.
    async def __init__(  # type: ignore[misc]
        self,
        *,
        apps: dict[str, str],
        grpc_port: int,
        http_port: int,
        limits: Limits,
        request_timeout_s: float,
        max_request_bytes: int,
        http_read_timeout_s: float = 30.0,
        http_max_connections: int = 1024,
        calls_per_target: int = 2,
        api_keys: ApiKeys | None = None,
        api_keys_file: str | None = None,
        tls: TLSFiles | None = None,
        internal_token: InternalToken | None = None,
        tracing: TracingConfig | None = None,
        require_api_keys: bool = False,
        query_log_sample_ratio: float = 0.01,
    ) -> None:
        bind_replica_ports_alone()  # before Serve binds this replica's ports
        trace_setup("gateway", tracing)
        keys = _load_keys(api_keys, api_keys_file, require=require_api_keys)
        tls = tls or TLSFiles()
        self.keys, self._max_request_bytes = keys, max_request_bytes
        self._limits, self._timeout_s = limits, request_timeout_s
        self._loop = asyncio.get_running_loop()
        self._observer = QueryObserver(log_sample_ratio=query_log_sample_ratio)
        options = {"calls_per_target": calls_per_target, "internal_token": internal_token}
        self._slot = ModelSlot(apps, max_message_bytes=max_request_bytes, **options)
        self._health = await DependencyHealth.find(apps)
        self._server = start_grpc_server(
            _SearchServicer(self),
            self._health.servicer,
            grpc_port,
            keys=keys,
            tls=tls,
            max_request_bytes=max_request_bytes,
        )
        self._http = _HTTPServer(
            _uvicorn_config(
                self.__call__,
                http_port,
                tls=tls,
                read_timeout_s=http_read_timeout_s,
                max_connections=http_max_connections,
            )
        )
        self._http_task = self._loop.create_task(self._http.serve())
        self._health.start()
        log.info(
            "gateway: gRPC on port %d, HTTP on port %d; %s",
            grpc_port,
            http_port,
            _security(keys, tls),
        )

    async def search(
        self,
        query: SearchQuery,
        *,
        timeout_s: float | None = None,
        api: str = "python",
        trace: Any = None,
    ) -> SearchResult:
        """Validates and runs a query within the deadline; counted, timed, traced (a child of
        `trace`, the caller's trace context, when given) and logged under `api`.

        Raises:
            RequestError (and subclasses), DependencyError, TimeoutError.
        """
        with self._observer.query(query, api=api, parent=trace) as outcome:
            outcome["result"] = await self._search(query, timeout_s)
            return outcome["result"]

    async def _search(self, query: SearchQuery, timeout_s: float | None) -> SearchResult:
        # The first passing check also tells whether the collection has the lexical index.
        problem = None if self._health.model_version else await self._health.check()
        if query.mode is None and self._health.lexical is False:
            query = dataclasses.replace(query, mode=SearchMode.DENSE)  # no lexical index
        query = validate(query, self._limits)  # a bad request is refused even when not ready
        if problem:
            raise DependencyError(f"not ready: {problem}")
        timeout = self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s)
        deadline = time.monotonic() + timeout
        try:
            return await asyncio.wait_for(
                run_search(
                    query,
                    self._slot.deps,
                    model_version=self._health.model_version,
                    deadline=deadline,
                    candidates=self._limits.candidates,
                ),
                timeout,
            )
        except TimeoutError as e:
            whose = (
                f"the gateway's deadline of {self._timeout_s:g} s (request_timeout_s)"
                if timeout == self._timeout_s
                else f"the caller's deadline of {timeout:.3g} s"
            )
            detail = f" ({e})" if str(e) and str(e) != "deadline exceeded" else ""
            raise TimeoutError(f"deadline exceeded: {whose} passed{detail}") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # this query itself was cancelled
                raise
            # A dependency's call was cancelled under us: its channel closed because the
            # replica it went to is gone (the clients drop targets Serve no longer publishes).
            raise DependencyError(
                "a backing service's replica went away during the call; retry"
            ) from None
        except Exception as e:
            raise _unwrap(e) from None

    async def search_many(
        self,
        queries: Sequence[SearchQuery],
        *,
        timeout_s: float | None = None,
        api: str = "python",
        trace: Any = None,
    ) -> list[SearchResult]:
        """Several queries answered together, in order: their encodes and store searches share
        the clients' batched calls. All are checked before any runs.

        Raises:
            RequestError naming the first bad query (none is answered); as `search`.
        """
        if len(queries) > MAX_BATCH_QUERIES:
            raise LimitError(f"{len(queries)} queries in one call, more than {MAX_BATCH_QUERIES}")
        for i, query in enumerate(queries):
            try:
                validate(query, self._limits)
            except RequestError as e:
                raise type(e)(f"query {i}: {e}") from None
        runs = [self.search(q, timeout_s=timeout_s, api=api, trace=trace) for q in queries]
        return list(await asyncio.gather(*runs))

    def search_from_thread(
        self,
        query: SearchQuery | Sequence[SearchQuery],
        *,
        timeout_s: float | None = None,
        api: str = "grpc",
        trace: Any = None,
    ):
        """`search` (or `search_many` for a sequence) run on the replica's event loop, for a
        caller on another thread (the gRPC server's): waits for it a little past the deadline
        the gateway itself enforces.

        Raises:
            as `search`; TimeoutError when the event loop gives no answer in that time.
        """
        limit = self._timeout_s if timeout_s is None else min(timeout_s, self._timeout_s)
        wait_s = limit + LOOP_GRACE_S
        work = (
            self.search(query, timeout_s=timeout_s, api=api, trace=trace)
            if isinstance(query, SearchQuery)
            else self.search_many(query, timeout_s=timeout_s, api=api, trace=trace)
        )
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result(timeout=wait_s)
        except TimeoutError as e:  # concurrent.futures.TimeoutError is TimeoutError (3.11)
            future.cancel()
            if str(e):  # search's own, naming whose deadline passed
                raise
            raise TimeoutError(f"deadline exceeded: no answer within {wait_s:g} s") from None

    async def info(self) -> dict:
        """The model served and the catalog searched: collection, dimension, size, filter
        fields."""
        store = await self._health.store_info()
        return {
            "model_version": store.pop("model_version"),
            "catalog": {
                "collection": store["collection"],
                "dimension": store["dim"],
                "points": store["points"],
                "indexed_fields": store["indexed_fields"],
            },
            # The model slot served (`vitrine rollout`), and why the last switch did not happen.
            "applications": dict(self._slot.apps),
            "switch_problem": self._slot.problem,
        }

    async def __call__(self, request: Request) -> Response:
        """HTTP: the search page on GET /; POST /v1/search with SearchRequest's JSON form (and
        /v1/search/batch with SearchBatchRequest's); GET /v1/info; GET /healthz."""
        path = request.url.path.rstrip("/")
        if request.method == "GET" and path in ("", "/index.html"):
            return HTMLResponse(SEARCH_PAGE)
        if request.method == "GET" and path.endswith("/healthz"):
            # Ready when the last dependency check passed, as gRPC health says.
            ready, health = self._health.ready, self._health
            state = {"ready": ready, "model_version": health.model_version}
            return JSONResponse(
                state | ({} if ready else {"problem": health.problem}), 200 if ready else 503
            )
        if request.method == "GET" and path == "/v1/info":
            if denied := self._http_denied(request, "info"):
                return denied
            try:
                return JSONResponse(await self.info())
            except Exception as e:
                problem = f"the vector store is not answering: {type(e).__name__}: {e}"
                return JSONResponse({"error": problem, "code": "UNAVAILABLE"}, 503)
        batch = path.endswith("/v1/search/batch")
        if request.method != "POST" or not (batch or path.endswith("/v1/search")):
            return JSONResponse(
                {
                    "error": "use GET / (search page), POST /v1/search, POST /v1/search/batch, "
                    "GET /v1/info or GET /healthz"
                },
                404,
            )
        if denied := self._http_denied(request, "search"):
            return denied
        return await search_endpoint(
            request,
            self,
            self._max_request_bytes,
            batch=batch,
            scope=lambda queries: scoped_queries(self.keys, request.headers.items(), queries),
        )

    def _http_denied(self, request: Request, scope: str) -> Response | None:
        """A 401/403 answer when the request's key is missing, unknown or lacks `scope`."""
        if not self.keys.enabled:
            return None
        try:
            self.keys.authorize(request.headers.items(), scope)
        except RequestError as e:
            log.info("denied %s %s: %s", request.method, request.url.path, e)
            wait_s = getattr(e, "retry_after_s", None)
            return JSONResponse(
                {"error": str(e), "code": e.code.name},
                429 if wait_s else HTTP_STATUS[e.code],
                headers={"retry-after": str(math.ceil(wait_s))}
                if wait_s
                else {"www-authenticate": "Bearer"},
            )
        return None

    async def reconfigure(self, config: dict) -> None:
        """Serve's `user_config`: `{"apps": {role: application}}` names the model slot to serve
        from (`vitrine rollout` / `rollback`, operations/rollout.py); other keys are refused by
        the Serve config's schema, not here.

        The switch is atomic for queries: each query reads the clients and the model version
        once, as a pair, so it runs wholly on the old slot or wholly on the new one; the old
        slot's clients close after the longest deadline. A slot that does not answer with one
        model within SWITCH_WAIT_S is not switched to (the old one keeps serving; `info` says
        which one serves).
        """
        await self._slot.switch(config.get("apps") or {}, self._health)

    async def check_health(self) -> None:
        """Serve's replica health check: the gRPC server must still be running."""
        if self._server is None:
            raise RuntimeError("gRPC server stopped")

    def __del__(self) -> None:
        # Also runs for a replica whose __init__ failed (an application it calls was not
        # deployed yet, and Serve retries), which has neither.
        if hasattr(self, "_health"):
            self._health.stop()
        if hasattr(self, "_http"):
            self._http.should_exit = True
        if hasattr(self, "_server"):
            self._server.stop(grace=None)
