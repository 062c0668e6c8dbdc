"""Fetching the images catalog events name, by a policy: a feed cannot turn the worker against
the network it runs in.

What a URI must pass before a byte is read (`FetchPolicy.check`):
- its scheme is allowed (`VITRINE_INGESTION_FETCH_SCHEMES`; `file` also needs
  `VITRINE_INGESTION_FETCH_FILE_ROOTS`);
- no credentials in it; its host is allowed (`VITRINE_INGESTION_FETCH_HOSTS`: names, `*.suffix`,
  or URL prefixes; empty allows any host whose address passes the next check);
- every address its host resolves to is public (not loopback, private, link-local, shared,
  reserved, multicast: cloud metadata at 169.254.169.254 is link-local), unless inside
  `VITRINE_INGESTION_FETCH_ALLOW_NETWORKS`; the connection is then made to that checked address
  itself (the host name still goes in the Host header and TLS SNI), so a DNS answer that changes
  between the check and the connection (rebinding) cannot swap it;
- a redirect is a new URI and passes all of this again (at most `MAX_REDIRECTS`);
- a `file://` path, with symlinks resolved, lies inside one of the roots.

A fetch has a total deadline (`VITRINE_INGESTION_IMAGE_FETCH_TIMEOUT_S`) covering connect,
redirects and every read, so a server trickling bytes cannot hold it longer. Failures are either
the record's fault (`PoisonError`: refused, malformed, 404, not an image...), or may pass
(`TransientError`: timeouts, refused connections, 429 and 5xx, truncated bodies): those are tried
again with backoff up to `attempts` times, then dead-lettered marked transient, for
`vitrine dlq replay`.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_URI_CHARS = 4096
SCHEMES = frozenset({"http", "https", "file"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


class PoisonError(ValueError):
    """A record that can never be indexed; it goes to the dead-letter topic."""


class TransientError(PoisonError):
    """A failure that may pass (a timeout, a 5xx): dead-lettered marked transient once the
    attempts are spent, so `vitrine dlq replay` can send the record back."""


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _split(text: str | Iterable[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    return [item.strip() for item in items if item.strip()]


@dataclass(frozen=True)
class FetchPolicy:
    """What the worker may fetch (see the module docstring).

    Args:
        schemes: allowed URI schemes, of http, https, file.
        hosts: allowed hosts (`cdn.example.com`, `*.example.com`) or URL prefixes
            (`https://cdn.example.com/images/`); empty: any host with public addresses.
        file_roots: folders `file://` URIs may read from.
        allow_networks: addresses allowed although not public (e.g. `10.0.0.0/8` for an
            internal image server; tests allow `127.0.0.1/32` for their loopback servers).
        timeout_s: total deadline of one attempt (connect, redirects, reads).
        attempts: tries of a transient failure before it is dead-lettered.
        backoff_s: first wait between attempts (doubled each time).
        max_bytes: largest image read.
        resolve: host, port -> addresses (tests pin DNS answers with it).
    """

    schemes: frozenset[str] = frozenset({"http", "https"})
    hosts: tuple[str, ...] = ()
    file_roots: tuple[Path, ...] = ()
    allow_networks: tuple[Network, ...] = ()
    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 0.5
    max_bytes: int = 10 * 2**20
    resolve: Callable[[str, int], list[str]] | None = field(default=None, compare=False)

    @classmethod
    def parse(
        cls,
        *,
        schemes: str | Iterable[str] = "http,https",
        hosts: str | Iterable[str] = "",
        file_roots: str | Iterable[str] = "",
        allow_networks: str | Iterable[str] = "",
        **kwargs,
    ) -> FetchPolicy:
        """A policy from comma-separated settings.

        Raises:
            ValueError: an unknown scheme, a bad network, `file` without roots.
        """
        scheme_set = frozenset(s.lower() for s in _split(schemes))
        if unknown := scheme_set - SCHEMES:
            raise ValueError(f"unknown fetch schemes {sorted(unknown)}; known: {sorted(SCHEMES)}")
        roots = tuple(Path(r).expanduser().resolve() for r in _split(file_roots))
        if "file" in scheme_set and not roots:
            raise ValueError(
                "the file scheme needs at least one root (VITRINE_INGESTION_FETCH_FILE_ROOTS)"
            )
        try:
            networks = tuple(ipaddress.ip_network(n, strict=False) for n in _split(allow_networks))
        except ValueError as e:
            raise ValueError(f"VITRINE_INGESTION_FETCH_ALLOW_NETWORKS: {e}") from None
        return cls(
            schemes=scheme_set,
            hosts=tuple(h.lower() for h in _split(hosts)),
            file_roots=roots,
            allow_networks=networks,
            **kwargs,
        )

    def describe(self) -> str:
        return (
            f"schemes {','.join(sorted(self.schemes)) or 'none'}; hosts "
            f"{','.join(self.hosts) or 'any public'}; file roots "
            f"{','.join(map(str, self.file_roots)) or 'none'}; private networks allowed "
            f"{','.join(map(str, self.allow_networks)) or 'none'}; deadline {self.timeout_s:g} s, "
            f"{self.attempts} attempts"
        )

    # Checks

    def check(self, uri: str) -> urllib.parse.SplitResult:
        """The parsed URI when the policy allows it.

        Raises:
            PoisonError: malformed or refused (the message says which rule).
        """
        if not isinstance(uri, str) or not uri:
            raise PoisonError("image_uri is empty")
        if len(uri) > MAX_URI_CHARS:
            raise PoisonError(f"image_uri is longer than {MAX_URI_CHARS} characters")
        if any(ord(c) < 0x21 or c == "\x7f" for c in uri):
            raise PoisonError(f"image_uri {uri[:200]!r}: whitespace or control characters")
        try:
            parts = urllib.parse.urlsplit(uri)
            port = parts.port
        except ValueError as e:
            raise PoisonError(f"image_uri {uri[:200]!r}: {e}") from None
        scheme = parts.scheme.lower()
        if scheme not in self.schemes:
            raise PoisonError(
                f"image_uri {uri[:200]!r}: scheme {scheme or 'none'!r} is not allowed "
                f"(allowed: {', '.join(sorted(self.schemes)) or 'none'}; "
                "VITRINE_INGESTION_FETCH_SCHEMES)"
            )
        if parts.username is not None or parts.password is not None:
            raise PoisonError(f"image_uri {uri[:200]!r}: credentials in a URI are not accepted")
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise PoisonError(f"image_uri {uri[:200]!r}: a file:// URI names no host")
            return parts
        host = (parts.hostname or "").lower()
        if not host:
            raise PoisonError(f"image_uri {uri[:200]!r}: no host")
        if port == 0:
            raise PoisonError(f"image_uri {uri[:200]!r}: port 0")
        if self.hosts and not any(self._host_matches(entry, host, uri) for entry in self.hosts):
            raise PoisonError(
                f"image_uri {uri[:200]!r}: host {host!r} is not allowed "
                "(VITRINE_INGESTION_FETCH_HOSTS)"
            )
        return parts

    @staticmethod
    def _host_matches(entry: str, host: str, uri: str) -> bool:
        if "://" in entry:
            return uri.lower().startswith(entry)
        if entry.startswith("*."):
            return host.endswith(entry[1:])
        return host == entry

    def address_allowed(self, address: str) -> bool:
        """Whether a connection may go to `address` (an IP literal)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow_networks):
            return True
        return ip.is_global and not ip.is_multicast

    def pick_address(self, host: str, port: int) -> str:
        """The first resolved address of `host` the policy allows.

        Raises:
            PoisonError: the host does not resolve, or only to refused addresses.
            TransientError: the resolver failed for now.
        """
        try:
            addresses = (self.resolve or _resolve)(host, port)
        except socket.gaierror as e:
            if e.errno in (socket.EAI_AGAIN,):
                raise TransientError(f"host {host!r}: {e}") from None
            raise PoisonError(f"host {host!r} does not resolve: {e}") from None
        except (UnicodeError, ValueError) as e:
            raise PoisonError(f"host {host!r}: {e}") from None
        for address in addresses:
            if self.address_allowed(address):
                return address
        raise PoisonError(
            f"host {host!r} resolves to {', '.join(addresses[:4]) or 'nothing'}: loopback, "
            "private, link-local or reserved addresses are refused "
            "(VITRINE_INGESTION_FETCH_ALLOW_NETWORKS)"
        )

    def file_path(self, parts: urllib.parse.SplitResult) -> Path:
        """The real path of a file:// URI, when inside a root.

        Raises:
            PoisonError: outside every root, or not a regular file.
        """
        try:
            path = Path(urllib.request.url2pathname(parts.path)).resolve()
        except (OSError, ValueError, RuntimeError) as e:
            raise PoisonError(f"file path {parts.path[:200]!r}: {e}") from None
        if not any(path.is_relative_to(root) for root in self.file_roots):
            raise PoisonError(
                f"file path {str(path)[:200]!r} is outside the allowed roots "
                "(VITRINE_INGESTION_FETCH_FILE_ROOTS)"
            )
        if not path.is_file():
            raise PoisonError(f"file path {str(path)[:200]!r} is not a regular file")
        return path


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))  # the address, not the port


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to a checked address, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """An HTTPS connection to a checked address; the certificate is checked against the host
    name (SNI too)."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()  # ours: HTTPSConnection's _context is private
        super().__init__(host, port, timeout=timeout, context=self._tls)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


class Fetcher:
    """Fetches image bytes under a `FetchPolicy`; thread-safe (one connection per fetch)."""

    def __init__(self, policy: FetchPolicy, *, sleep: Callable[[float], None] = time.sleep):
        self.policy = policy
        self._sleep = sleep

    def fetch(self, uri: str) -> bytes:
        """The bytes behind `uri`, trying transient failures again with backoff.

        Raises:
            PoisonError: refused or broken for good.
            TransientError: still failing after every attempt.
        """
        backoff = self.policy.backoff_s
        for attempt in range(1, self.policy.attempts + 1):
            try:
                return self.fetch_once(uri)
            except TransientError as e:
                if attempt == self.policy.attempts:
                    raise TransientError(f"{e} (after {attempt} attempts)") from None
                log.info(
                    "fetch of %.200s failed (%s); attempt %d in %.1f s",
                    uri,
                    e,
                    attempt + 1,
                    backoff,
                )
                self._sleep(backoff)
                backoff *= 2
        raise AssertionError("unreachable")

    def fetch_once(self, uri: str) -> bytes:
        """One attempt, within the policy's deadline."""
        deadline = time.monotonic() + self.policy.timeout_s
        for _ in range(MAX_REDIRECTS + 1):
            parts = self.policy.check(uri)
            if parts.scheme.lower() == "file":
                return self._read_file(parts)
            location = self._get(uri, parts, deadline)
            if isinstance(location, bytes):
                return location
            uri = location
        raise PoisonError(f"image_uri: more than {MAX_REDIRECTS} redirects")

    def _read_file(self, parts) -> bytes:
        path = self.policy.file_path(parts)
        try:
            with path.open("rb") as f:
                data = f.read(self.policy.max_bytes + 1)
        except OSError as e:
            raise PoisonError(f"file {str(path)[:200]!r}: {e}") from None
        if len(data) > self.policy.max_bytes:
            raise PoisonError(f"file {str(path)[:200]!r}: more than {self.policy.max_bytes} bytes")
        return data

    def _get(self, uri: str, parts, deadline: float) -> bytes | str:
        """The body, or the next URI of a redirect."""
        https = parts.scheme.lower() == "https"
        host = parts.hostname.lower()
        port = parts.port or (443 if https else 80)
        where = f"image_uri {uri[:200]!r}"
        address = self.policy.pick_address(host, port)
        connection_type = _PinnedHTTPS if https else _PinnedHTTP
        conn = connection_type(host, port, address=address, timeout=_remaining(deadline, where))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request(
                "GET",
                path,
                headers={"User-Agent": "vitrine-ingestion", "Accept": "image/*"},
            )
            sock = conn.sock  # http.client drops it once a response will close the connection
            sock.settimeout(_remaining(deadline, where))
            response = conn.getresponse()
            status = response.status
            if status in REDIRECTS:
                target = response.getheader("Location")
                if not target:
                    raise PoisonError(f"{where}: HTTP {status} without a Location")
                return urllib.parse.urljoin(uri, target.strip())
            if status == 429 or 500 <= status <= 599:
                raise TransientError(f"{where}: HTTP {status} {response.reason}"[:400])
            if status != 200:
                raise PoisonError(f"{where}: HTTP {status} {response.reason}"[:400])
            length = response.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > self.policy.max_bytes:
                raise PoisonError(
                    f"{where}: {int(length)} bytes, more than {self.policy.max_bytes}"
                )
            return self._read_body(sock, response, deadline, where)
        except PoisonError:
            raise
        except TimeoutError as e:
            raise TransientError(f"{where}: timed out ({e or 'deadline'})") from None
        except http.client.IncompleteRead as e:
            raise TransientError(f"{where}: truncated response ({len(e.partial)} bytes)") from None
        except (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError) as e:
            raise TransientError(f"{where}: {type(e).__name__}: {e}") from None
        except ssl.SSLError as e:
            raise PoisonError(f"{where}: TLS: {e}") from None
        except (http.client.HTTPException, OSError, ValueError) as e:
            # Not HTTP at all (BadStatusLine, LineTooLong...), unreachable networks, bad bytes.
            raise PoisonError(f"{where}: {type(e).__name__}: {e}"[:400]) from None
        finally:
            conn.close()

    def _read_body(self, sock, response, deadline: float, where: str) -> bytes:
        chunks, size = [], 0
        while size <= self.policy.max_bytes:
            sock.settimeout(_remaining(deadline, where))
            chunk = response.read1(_CHUNK)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > self.policy.max_bytes:
            raise PoisonError(f"{where}: more than {self.policy.max_bytes} bytes")
        if response.length:  # the connection ended before the Content-Length it announced
            raise TransientError(f"{where}: truncated response ({size} bytes)")
        return b"".join(chunks)


def _remaining(deadline: float, where: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransientError(f"{where}: the fetch deadline passed")
    return left
