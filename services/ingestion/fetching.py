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
import logging
import socket
import ssl
import time
import urllib.parse
import urllib.request
from collections.abc import Callable

from services.ingestion.fetch_policy import FetchPolicy, PoisonError, TransientError

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


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
