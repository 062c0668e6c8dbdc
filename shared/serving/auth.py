"""The internal credential every internal gRPC call carries, and how services check it."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from pathlib import Path

import grpc

from shared.serving.errors import RequestError
from shared.settings import SettingsError


class UnauthenticatedError(RequestError):
    """No key, or a key that is not configured."""

    code = grpc.StatusCode.UNAUTHENTICATED


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


# The internal credential: what every internal caller (the gateway, the ingestion worker, the
# CLI) sends to the internal services (encoders, fusion, vector store), whose gRPC servers Serve
# binds on every interface with no host option (ray.serve._private.grpc_util.start_grpc_server
# binds "[::]:PORT"), so anyone reaching the machine reaches them (issue 17).
INTERNAL_TOKEN_HEADER = "x-vitrine-internal-token"


MIN_INTERNAL_TOKEN_CHARS = 32


NO_INTERNAL_TOKEN = (
    "this service has no internal token configured (VITRINE_INTERNAL_TOKEN or "
    "VITRINE_INTERNAL_TOKEN_FILE on the cluster), so it refuses every gRPC call"
)


class InternalToken:
    """The shared secret internal gRPC calls carry as `x-vitrine-internal-token` metadata.

    The value never appears in a repr, a message or a log; a presented value is compared by its
    SHA-256 digest in constant time.
    """

    def __init__(self, token: str, *, source: str = "the internal token") -> None:
        token = token.strip()
        if len(token) < MIN_INTERNAL_TOKEN_CHARS:
            raise ValueError(f"{source} is shorter than {MIN_INTERNAL_TOKEN_CHARS} characters")
        self._token, self._digest = token, _digest(token)

    @classmethod
    def load(cls, *, env_text: str | None, file: str | None) -> InternalToken | None:
        """The token of the environment variable's text, else of a file; None when neither.

        Raises:
            ValueError: both are set, the file cannot be read, or the token is too short.
        """
        if env_text and file:
            raise ValueError("set VITRINE_INTERNAL_TOKEN or VITRINE_INTERNAL_TOKEN_FILE, not both")
        if env_text:
            return cls(env_text, source="VITRINE_INTERNAL_TOKEN")
        if not file:
            return None
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"internal token file {file}: {e.strerror}") from None
        return cls(text, source=f"internal token file {file}")

    def __repr__(self) -> str:
        return "InternalToken(<hidden>)"

    def metadata(self, app_name: str) -> tuple[tuple[str, str], ...]:
        """gRPC metadata of an internal call: Serve's application name and the token."""
        return (("application", app_name), (INTERNAL_TOKEN_HEADER, self._token))

    def check(self, headers: Iterable[tuple[str, str | bytes]]) -> None:
        """Raises UnauthenticatedError unless `headers` carry this token."""
        presented = None
        for name, value in headers:
            if name.lower() == INTERNAL_TOKEN_HEADER:
                presented = value.decode("latin-1") if isinstance(value, bytes) else value
        if presented is None:
            raise UnauthenticatedError(
                f"missing internal credential: internal services answer only calls that carry "
                f"the platform's internal token as '{INTERNAL_TOKEN_HEADER}' metadata"
            )
        if not hmac.compare_digest(_digest(presented.strip()), self._digest):
            raise UnauthenticatedError("invalid internal credential")


def check_internal_call(token: InternalToken | None, grpc_context) -> None:
    """Refuses (UnauthenticatedError) a gRPC call to an internal service without the token.

    A call with no gRPC context came through a Serve handle, i.e. from inside the Ray cluster,
    which Ray's own token authentication guards.
    """
    if grpc_context is None:
        return
    if token is None:
        raise UnauthenticatedError(NO_INTERNAL_TOKEN)
    token.check(grpc_context.invocation_metadata() or ())


def internal_token_of(settings) -> InternalToken | None:
    """The InternalToken of a process's settings (`internal_token`, `internal_token_file`).

    Raises:
        SettingsError: as InternalToken.load, naming the setting's problem.
    """
    secret = settings.internal_token
    try:
        return InternalToken.load(
            env_text=secret.get_secret_value() if secret else None,
            file=settings.internal_token_file,
        )
    except ValueError as e:
        raise SettingsError(str(e)) from None


def service_internal_token(settings, *, service: str) -> InternalToken | None:
    """The token an internal service checks on every gRPC call. Without one it refuses every
    call; in production it refuses to start.

    Raises:
        SettingsError: a bad token setting, or none in production.
    """
    token = internal_token_of(settings)
    if token is None and settings.environment == "production":
        raise SettingsError(
            f"{service}: VITRINE_ENVIRONMENT=production needs an internal token "
            "(VITRINE_INTERNAL_TOKEN or VITRINE_INTERNAL_TOKEN_FILE, from a Secret)"
        )
    return token


def caller_internal_token(settings, *, caller: str) -> InternalToken:
    """The token an internal caller (gateway, ingestion worker, CLI) sends: required, since
    every internal service refuses calls without it.

    Raises:
        SettingsError: a bad token setting, or none.
    """
    token = internal_token_of(settings)
    if token is None:
        raise SettingsError(
            f"{caller} needs the internal token the internal services check: set "
            "VITRINE_INTERNAL_TOKEN or VITRINE_INTERNAL_TOKEN_FILE (`make run` writes "
            "artifacts/secrets/internal_token)"
        )
    return token
