"""Two gateway replicas on one host share the HTTP port, as they share the gRPC port
(SO_REUSEPORT): the second replica's uvicorn failed to bind 8000 and stopped its event loop."""

from __future__ import annotations

import asyncio
import urllib.request

import uvicorn

from operations.ports import free_port
from services.gateway.servers import _HTTPServer


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_two_http_servers_bind_one_port():
    port = free_port()

    async def main() -> list[bytes]:
        servers = [
            _HTTPServer(uvicorn.Config(_app, host="127.0.0.1", port=port, log_config=None))
            for _ in range(2)
        ]
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        for _ in range(200):
            if all(s.started for s in servers) or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        assert all(s.started for s in servers), [t.exception() for t in tasks if t.done()]
        url = f"http://127.0.0.1:{port}/"
        bodies = await asyncio.to_thread(
            lambda: [urllib.request.urlopen(url, timeout=5).read() for _ in range(4)]  # noqa: S310
        )
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks)
        return bodies

    assert asyncio.run(main()) == [b"ok"] * 4
