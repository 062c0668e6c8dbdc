"""A TCP relay in front of the local broker that lets librdkafka 2.0.2 (Debian's kcat) talk to it.

Tansu answers ApiVersions v3 with all four top-level tagged fields written out at their default
values (Apache Kafka omits default-valued tags); librdkafka 2.0.2 misreads them ("Protocol read
buffer underflow for ApiVersion v3") and gives up. The relay passes every frame through
unchanged except ApiVersions v3+ responses, whose top-level tagged fields it drops. Start the
broker with `advertised_port=relay.port` so that clients stay on the relay after bootstrapping.
"""

from __future__ import annotations

import asyncio
import struct
import threading

from operations.ports import free_port

API_VERSIONS = 18


def strip_api_versions_tags(body: bytes) -> bytes:
    """An ApiVersions v3 response body (after the correlation id) without its top-level tags."""
    n_keys = body[2] - 1  # error_code (2 bytes), then a compact array of (key, min, max, tags)
    if body[2] >= 0x80:
        raise ValueError("more than 126 API keys: the varint length is not handled")
    end = 3 + n_keys * 7 + 4  # each entry 7 bytes (3 int16 + empty tag buffer), throttle_time
    return body[:end] + b"\x00"


class KafkaRelay:
    """Relays 127.0.0.1:port to the broker's port in a background thread (a context manager)."""

    def __init__(self, broker_port: int) -> None:
        self.port = free_port()
        self._broker_port = broker_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> KafkaRelay:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        ).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _handle(self, client_r, client_w) -> None:
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", self._broker_port)
        requests: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, version)

        async def upstream() -> None:
            while True:
                frame = await _read_frame(client_r)
                key, version, correlation = struct.unpack(">hhi", frame[:8])
                requests[correlation] = (key, version)
                broker_w.write(struct.pack(">i", len(frame)) + frame)
                await broker_w.drain()

        async def downstream() -> None:
            while True:
                frame = await _read_frame(broker_r)
                (correlation,) = struct.unpack(">i", frame[:4])
                key, version = requests.pop(correlation, (None, 0))
                if key == API_VERSIONS and version >= 3:
                    frame = frame[:4] + strip_api_versions_tags(frame[4:])
                client_w.write(struct.pack(">i", len(frame)) + frame)
                await client_w.drain()

        try:
            await asyncio.gather(upstream(), downstream())
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()
            broker_w.close()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)
