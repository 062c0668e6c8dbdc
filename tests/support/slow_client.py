"""Raw-socket HTTP clients for the server-limit tests: one that trickles its request in, one
that reads a whole answer."""

from __future__ import annotations

import socket
import time

# A request whose headers alone take 25 s at a byte per 50 ms, and one whose body does.
SLOW_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
    f"X-Slow-{i}: {'a' * 20}\r\n".encode() for i in range(500)
)
SLOW_BODY = (
    b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"b" * 100_000
)


def connect(port: int, host: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection((host, port), timeout=30)


def response(sock: socket.socket) -> bytes:
    """Reads one answer: until its Content-Length is in, or the server closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, found, body = data.partition(b"\r\n\r\n")
        length = [x for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")]
        if found and length and len(body) >= int(length[0].split(b":")[1]):
            break
    return data


def trickle_until_closed(sock: socket.socket, data: bytes, *, give_up_s: float = 60) -> bytes:
    """Sends `data` a byte every 50 ms until the server closes the connection; returns what the
    server sent back. Fails if the server still reads after `give_up_s`, or took all of `data`."""
    sock.settimeout(0.05)
    received = b""
    give_up = time.monotonic() + give_up_s
    for byte in data:
        assert time.monotonic() < give_up, "the server kept reading a trickling request"
        try:
            sock.sendall(bytes([byte]))
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return received
        if not chunk:
            return received
        received += chunk
    raise AssertionError("the whole trickled request was sent: the server never closed it")


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed `sock` (without waiting)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
