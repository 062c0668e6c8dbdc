"""A hostile image host on loopback, for the fetch policy's tests (unit) and the hostile feeds
(integration): every way a server named by a feed can answer, and two ports that are not HTTP."""

from __future__ import annotations

import http.server
import socket
import threading
import time

from tests.support.tiny import png_bytes


class HostileHttpServer:
    """Loopback HTTP with these routes:

    - /img/N.png: a small PNG (`png_bytes(N % 1000)`);
    - /slow/N.png: the same, once `release` is set or `slow_s` has passed;
    - /redirect?to=URI, /loop (a redirect to itself), /status/N (that status);
    - /trickle (a byte every 50 ms of 100 kB announced), /short (a PNG cut short of its
      Content-Length), /cut (a truncated chunk), /notimage (HTML), /huge (1 GB announced).

    Beside it, `other_port` answers in another protocol (an SSH banner) and nothing listens on
    `closed_port`. `hits` lists (path, Host header) of every request.
    """

    def __init__(self, *, slow_s: float = 0.3) -> None:
        owner = self
        self.slow_s = slow_s
        self.release = threading.Event()
        self.hits: list[tuple[str, str | None]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.hits.append((self.path, self.headers.get("Host")))
                owner._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.other = socket.socket()
        self.other.bind(("127.0.0.1", 0))
        self.other.listen(64)
        self.other_port = self.other.getsockname()[1]
        threading.Thread(target=self._not_http, daemon=True).start()
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        self.closed_port = closed.getsockname()[1]
        closed.close()

    def _not_http(self) -> None:
        while True:
            try:
                conn, _ = self.other.accept()
            except OSError:
                return
            try:
                conn.settimeout(5)
                conn.recv(4096)  # the request first: closing on it unread would be a reset
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            except OSError:
                pass
            conn.close()

    def _handle(self, h: http.server.BaseHTTPRequestHandler) -> None:
        path, _, query = h.path.partition("?")

        def send(status: int, body: bytes, **headers) -> None:
            h.send_response(status)
            h.send_header("Content-Length", headers.pop("length", str(len(body))))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)

        if path.startswith(("/img/", "/slow/")):
            if path.startswith("/slow/"):
                self.release.wait(self.slow_s)
            send(200, png_bytes(int(path.rsplit("/", 1)[1].split(".")[0]) % 1000))
        elif path == "/redirect":
            send(302, b"", Location=query.removeprefix("to="))
        elif path == "/loop":
            send(302, b"", Location="/loop")
        elif path.startswith("/status/"):
            send(int(path.rsplit("/", 1)[1]), b"no")
        elif path == "/trickle":
            _trickle(h)
        elif path == "/short":
            body = png_bytes(3)
            send(200, body, length=str(len(body) + 100))
            h.close_connection = True
        elif path == "/cut":
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            h.wfile.write(b"400\r\n" + b"x" * 10)
            h.close_connection = True
        elif path == "/notimage":
            send(200, b"<html>hello</html>", **{"Content-Type": "text/html"})
        elif path == "/huge":
            send(200, b"x" * 10, length=str(2**30))
            h.close_connection = True
        else:
            send(404, b"no")

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.other.close()


def _trickle(h: http.server.BaseHTTPRequestHandler) -> None:
    """A byte every 50 ms for 30 s, of the 100 kB announced, until the client hangs up."""
    h.send_response(200)
    h.send_header("Content-Length", "100000")
    h.end_headers()
    for _ in range(600):
        try:
            h.wfile.write(b"x")
            h.wfile.flush()
        except OSError:
            return
        time.sleep(0.05)
