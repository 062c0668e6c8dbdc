"""The image fetch policy: which schemes, hosts, file roots and addresses a catalog event's
`image_uri` may reach (services/ingestion/fetching.py fetches under it), and the two ways a
record fails."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_URI_CHARS = 4096


SCHEMES = frozenset({"http", "https", "file"})


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
