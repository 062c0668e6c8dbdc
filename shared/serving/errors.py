"""Errors a deployment raises for the caller's mistakes, and their gRPC status codes.

Anything else escaping a deployment is a server fault (INTERNAL / UNAVAILABLE); a caller's
mistake must never be reported as one (docs ARCHITECTURE.md, "Errors").
"""

from __future__ import annotations

import time

import grpc

from shared.observability import tracing


class RequestError(ValueError):
    """The request is wrong; the message tells the caller what to fix."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class LimitError(RequestError):
    """The request exceeds a limit (size, count, top_k)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFoundError(RequestError):
    """The request names something that does not exist (e.g. an unknown product id)."""

    code = grpc.StatusCode.NOT_FOUND


class DependencyError(RuntimeError):
    """A service this one needs is down or failed.

    `code` is what this service answers its own caller (UNAVAILABLE, whatever went wrong
    downstream); `status` is the gRPC status the dependency's call failed with, for a caller
    that retries some failures and not others (the ingestion worker retries UNAVAILABLE, and
    stops on UNAUTHENTICATED).
    """

    code = grpc.StatusCode.UNAVAILABLE

    def __init__(self, message: str = "", *, status: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.status = status or grpc.StatusCode.UNAVAILABLE


HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.INTERNAL: 500,
}


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message reported for an exception."""
    code = getattr(exc, "code", None)
    if isinstance(code, grpc.StatusCode):
        return code, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see server logs"


def dependency_status(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status a call to a dependency failed with, from the exception the internal
    clients raise for it (shared.serving.clients): a DependencyError's `status`,
    DEADLINE_EXCEEDED for a TimeoutError; None for any other exception."""
    if isinstance(exc, DependencyError):
        return exc.status
    if isinstance(exc, TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return None


def report_to_grpc(grpc_context, exc: BaseException) -> None:
    """Sets the status of a Serve gRPC call from an exception (the caller then re-raises).

    Ray Serve keeps a status set on `grpc_context` before the method raises
    (`ray.serve._private.replica._maybe_wrap_grpc_exception`).
    """
    code, message = status_of(exc)
    if grpc_context is not None:
        grpc_context.set_code(code)
        grpc_context.set_details(message)


def parse(convert, message):
    """`convert(message)`, with the converter's ValueError reported as the caller's mistake."""
    try:
        return convert(message)
    except ValueError as e:
        raise RequestError(str(e)) from None


def grpc_method(fn):
    """A deployment's gRPC method written as `async fn(self, request)`: an exception it raises
    sets the call's status (report_to_grpc) before Serve sees it.

    Every call must carry the internal token the deployment holds as `self._internal_token`
    (shared.serving.auth.check_internal_call): without it the call is refused with
    UNAUTHENTICATED before `fn` runs, and a deployment holding no token refuses every call.

    A deployment with `_rpc_metrics` (shared.observability.metrics.RpcMetrics) counts each call
    by method and status code. The call's span (shared.observability.tracing) continues the caller's trace context.

    The wrapper names `grpc_context` in its own signature, which is how Serve decides to pass
    the context (ray.serve._private.replica.UserMethodInfo), so it must not expose `fn`'s.
    """
    from shared.serving.auth import check_internal_call  # auth imports this module

    async def call(self, request, grpc_context):
        started, code = time.perf_counter(), "OK"
        try:
            check_internal_call(getattr(self, "_internal_token", None), grpc_context)
            return await fn(self, request)
        except Exception as e:
            code = status_of(e)[0].name
            report_to_grpc(grpc_context, e)
            raise
        finally:
            if (metrics := getattr(self, "_rpc_metrics", None)) is not None:
                metrics.record(fn.__name__, code, time.perf_counter() - started)

    async def method(self, request, grpc_context=None):
        if not tracing.enabled():
            return await call(self, request, grpc_context)
        parent = tracing.extract(grpc_context.invocation_metadata()) if grpc_context else None
        with tracing.span(f"{type(self).__name__}.{fn.__name__}", parent=parent, server=True):
            return await call(self, request, grpc_context)

    method.__name__, method.__qualname__, method.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    return method
