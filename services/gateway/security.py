"""Who may call the gateway, and over what: API keys with scopes, TLS and mTLS credentials.

API keys come from the environment (`VITRINE_GATEWAY_API_KEYS`) or a file (a Kubernetes Secret
mounted as a volume); this module only parses the text it is given. One entry per line or comma:

    NAME:KEY                           every scope, every catalog
    NAME:KEY:SCOPE+SCOPE               only these scopes (`search`, `info`)
    NAME:KEY:SCOPE+SCOPE:OPTION:...    and options:
        rate=50/s, rate=600/min        at most this many requests (per gateway replica)
        catalogs=shoes+bags            only these catalogs (a query naming another is refused;
                                       a key of one catalog searches it by default)

Only SHA-256 digests of the keys are kept, and no message or repr ever includes a key: errors
name the entry by its position and the client by NAME.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.gateway.ratelimit import RateLimiter, parse_rate
from shared.catalogs import catalog_problem
from shared.serving.auth import UnauthenticatedError, _digest
from shared.serving.errors import RequestError
from shared.types import SearchQuery

SCOPES = frozenset({"search", "info"})
MIN_KEY_CHARS = 16
# gRPC metadata keys and HTTP headers that carry a key (lower case, as both deliver them).
BEARER_HEADER, KEY_HEADER = "authorization", "x-api-key"


class PermissionDeniedError(RequestError):
    """A valid key without the scope the call needs."""

    code = grpc.StatusCode.PERMISSION_DENIED


@dataclass(frozen=True)
class Principal:
    """An authenticated client: the NAME of its key entry and the scopes it holds."""

    name: str
    scopes: frozenset[str]
    rate_per_s: float | None = None  # None: no limit
    catalogs: frozenset[str] | None = None  # None: every catalog

    def catalog_of(self, asked: str) -> str:
        """The catalog a query of this key searches: the one it names, or, when it names none
        and the key has a single catalog, that one.

        Raises:
            PermissionDeniedError: the key is not scoped to the catalog.
        """
        if self.catalogs is None:
            return asked
        if not asked and len(self.catalogs) == 1:
            return next(iter(self.catalogs))
        if asked not in self.catalogs:
            shown = repr(asked) if asked else "the default catalog"
            raise PermissionDeniedError(f"API key {self.name!r} is not scoped to {shown}")
        return asked


class ApiKeys:
    """The configured keys; empty means authentication is off (the embedded default)."""

    def __init__(self, principals: dict[bytes, Principal] | None = None) -> None:
        self._by_digest = dict(principals or {})
        self._limiter = RateLimiter()

    @classmethod
    def parse(cls, text: str, *, source: str) -> ApiKeys:
        """Reads entries from `text`; `source` names where it came from in error messages.

        Raises:
            ValueError: a malformed entry, an unknown scope, a short or repeated key.
        """
        principals: dict[bytes, Principal] = {}
        entries = [e.strip() for line in text.splitlines() for e in line.split(",")]
        for i, entry in enumerate((e for e in entries if e and not e.startswith("#")), 1):
            parts = entry.split(":")
            if len(parts) < 2 or not parts[0].strip() or not parts[1]:
                raise ValueError(
                    f"{source}: entry {i} is not NAME:KEY or NAME:KEY:SCOPE+SCOPE[:OPTION...]"
                )
            name, key = parts[0].strip(), parts[1]
            scopes = frozenset(parts[2].split("+")) if len(parts) >= 3 else SCOPES
            try:
                rate, catalogs = _options(parts[3:])
            except ValueError as e:
                raise ValueError(f"{source}: entry {i} ({name}): {e}") from None
            if unknown := scopes - SCOPES:
                raise ValueError(
                    f"{source}: entry {i} ({name}) has unknown scopes {sorted(unknown)}; "
                    f"known: {sorted(SCOPES)}"
                )
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(
                    f"{source}: entry {i} ({name}) has a key shorter than {MIN_KEY_CHARS} chars"
                )
            if _digest(key) in principals:
                raise ValueError(f"{source}: entry {i} ({name}) repeats another entry's key")
            principals[_digest(key)] = Principal(name, scopes, rate, catalogs)
        return cls(principals)

    @classmethod
    def load(cls, *, env_text: str | None, file: str | None) -> ApiKeys:
        """The keys of the environment variable's text and of a key file, together.

        Raises:
            ValueError: an entry is malformed, or the file cannot be read.
        """
        keys = cls.parse(env_text or "", source="VITRINE_GATEWAY_API_KEYS")
        if file:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except OSError as e:
                raise ValueError(f"API key file {file}: {e.strerror}") from None
            keys = keys.merged(cls.parse(text, source=f"API key file {file}"))
        return keys

    def merged(self, other: ApiKeys) -> ApiKeys:
        if self._by_digest.keys() & other._by_digest.keys():
            raise ValueError("the same API key is configured twice")
        return ApiKeys({**self._by_digest, **other._by_digest})

    @property
    def enabled(self) -> bool:
        return bool(self._by_digest)

    @property
    def names(self) -> list[str]:
        return sorted(p.name for p in self._by_digest.values())

    def __repr__(self) -> str:
        return f"ApiKeys(names={self.names})"

    def principal(self, headers: Iterable[tuple[str, str | bytes]]) -> Principal | None:
        """The caller behind the request's key, without checks (None: no key, or unknown, or
        authentication off); for a call the interceptor already let in."""
        key = _presented_key(headers)
        if key is None:
            return None
        presented = _digest(key)
        # A compare over every entry (no early exit) keeps the time independent of the match.
        found = None
        for digest, principal in self._by_digest.items():
            if hmac.compare_digest(digest, presented):
                found = principal
        return found

    def authorize(self, headers: Iterable[tuple[str, str | bytes]], scope: str | None) -> Principal:
        """The caller behind the request's `authorization: Bearer KEY` or `x-api-key: KEY`.

        Args:
            headers: (name, value) pairs: gRPC invocation metadata or HTTP headers.
            scope: what the call needs; None: any valid key.

        Raises:
            UnauthenticatedError: no key, or an unknown one.
            PermissionDeniedError: the key lacks `scope`.
            RateLimitedError: the key is over its rate (the request is not counted).
        """
        if _presented_key(headers) is None:
            raise UnauthenticatedError(
                "missing credentials: send the API key as 'authorization: Bearer KEY' "
                "or 'x-api-key: KEY'"
            )
        found = self.principal(headers)
        if found is None:
            raise UnauthenticatedError("invalid API key")
        if scope is not None and scope not in found.scopes:
            raise PermissionDeniedError(f"API key {found.name!r} lacks the scope {scope!r}")
        if found.rate_per_s is not None:
            self._limiter.take(found.name, found.rate_per_s)
        return found


def _options(options: list[str]) -> tuple[float | None, frozenset[str] | None]:
    """(rate, catalogs) of an entry's options.

    Raises:
        ValueError: an unknown or repeated option, a bad rate or catalog name.
    """
    found: dict[str, str] = {}
    for option in options:
        field, sep, value = option.partition("=")
        if not sep or field not in ("rate", "catalogs") or field in found:
            raise ValueError(f"option {option[:40]!r} is not rate=N/s, rate=N/min or catalogs=A+B")
        found[field] = value
    rate = parse_rate(found["rate"]) if "rate" in found else None
    catalogs = None
    if "catalogs" in found:
        catalogs = frozenset(found["catalogs"].split("+"))
        for catalog in catalogs:
            if not catalog or (problem := catalog_problem(catalog)):
                raise ValueError(problem or "catalogs= names an empty catalog")
    return rate, catalogs


def _presented_key(headers: Iterable[tuple[str, str | bytes]]) -> str | None:
    for name, value in headers:
        name = name.lower()
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if name == KEY_HEADER and value.strip():
            return value.strip()
        if name == BEARER_HEADER:
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of the gateway's TLS: its certificate chain and key, and for mTLS the CA that
    signs the clients' certificates (set: a client without a valid certificate is refused)."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    def check(self) -> None:
        """Raises ValueError if the combination is incomplete (a key without a cert, mTLS
        without TLS)."""
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError(
                "TLS needs both VITRINE_GATEWAY_TLS_CERT_FILE and VITRINE_GATEWAY_TLS_KEY_FILE"
            )
        if self.client_ca_file and not self.cert_file:
            raise ValueError(
                "mTLS (VITRINE_GATEWAY_TLS_CLIENT_CA_FILE) needs TLS (a cert and a key)"
            )

    def server_credentials(self) -> grpc.ServerCredentials:
        """gRPC server credentials read from the files.

        Raises:
            ValueError: a file cannot be read.
        """
        self.check()
        if not (self.cert_file and self.key_file):
            raise ValueError("TLS is off: no certificate and key files are set")
        ca = _read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(_read(self.key_file), _read(self.cert_file))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"TLS file {path}: {e.strerror}") from None


def open_gateway_problem(
    *, environment: str, keys_configured: bool, allow_unauthenticated: bool
) -> str | None:
    """Why a gateway must not start open (None: it may): production without API keys, unless
    explicitly allowed."""
    if environment != "production" or keys_configured or allow_unauthenticated:
        return None
    return (
        "VITRINE_ENVIRONMENT=production and no API keys (VITRINE_GATEWAY_API_KEYS or "
        "VITRINE_GATEWAY_API_KEYS_FILE): refusing to serve every caller; set keys, or "
        "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED=true to run open on purpose"
    )


def scoped_queries(keys: ApiKeys, headers, queries: list[SearchQuery]) -> list[SearchQuery]:
    """`queries` with the catalog each searches under the caller's key (`Principal.catalog_of`);
    unchanged when authentication is off.

    Raises:
        PermissionDeniedError: a query names a catalog the key is not scoped to.
    """
    principal = keys.principal(headers) if keys.enabled else None
    if principal is None:
        return queries
    return [dataclasses.replace(q, catalog=principal.catalog_of(q.catalog)) for q in queries]
