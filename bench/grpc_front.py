"""Probe: a gRPC front that answers each call with two calls to a backend, served two ways.

`threaded`: a grpcio thread-pool server whose handler hands the work to an asyncio loop
(run_coroutine_threadsafe) where grpc.aio clients make the two calls; the gateway's shape
(services/gateway/servers.py). `aio`: a grpc.aio server on that same loop, no hand-off.
Prints, for 1 and 32 closed-loop clients (one channel each), calls/s, p50 and the CPU of the
front and of the backend per call. The backend echoes; the front's answer carries 40 KB, like
a top-10 answer with thumbnails. Not part of `python -m bench` (docs/BENCHMARKS.md, "What the
load waits for", quotes its numbers):

    .venv/bin/python bench/grpc_front.py [SECONDS]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operations.ports import free_port  # noqa: E402

ECHO = "/probe.Backend/Echo"
SEARCH = "/probe.Front/Search"


async def _backend(port: int) -> None:
    async def echo(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("probe.Backend", {"Echo": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _front(mode: str, port: int, backend: str) -> None:
    loop = asyncio.get_running_loop()
    call = grpc.aio.insecure_channel(backend).unary_unary(ECHO)

    async def work(request: bytes) -> bytes:
        first = await call(request)  # "encode"
        second = await call(first + b"x" * 100)  # "search"
        return second[:20_000] + b"y" * 20_000

    if mode == "threaded":

        def search(request: bytes, context) -> bytes:
            return asyncio.run_coroutine_threadsafe(work(request), loop).result(10)

        server = grpc.server(concurrent.futures.ThreadPoolExecutor(64))
    else:

        async def search(request: bytes, context) -> bytes:  # type: ignore[misc]
            return await work(request)

        server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(search)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("probe.Front", {"Search": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    started = server.start()
    if started is not None:
        await started
    await asyncio.Event().wait()


def _drive(target: str, clients: int, seconds: float, pids: list[int]) -> str:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    def client() -> None:
        search = grpc.insecure_channel(target).unary_unary(SEARCH)
        search(b"q", timeout=10)  # connect
        while time.monotonic() < stop:
            t = time.perf_counter()
            search(b"q" * 200, timeout=10)
            latencies.append(time.perf_counter() - t)

    procs = [psutil.Process(p) for p in pids]
    before = [sum(p.cpu_times()[:2]) for p in procs]
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    cpu = [sum(p.cpu_times()[:2]) - b for p, b in zip(procs, before, strict=True)]
    latencies.sort()
    n = len(latencies)
    return (
        f"{n / elapsed:7.0f} calls/s  p50 {latencies[n // 2] * 1000:6.2f} ms  CPU per call: "
        f"front {cpu[0] * 1000 / n:.3f} ms, backend {cpu[1] * 1000 / n:.3f} ms"
    )


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    if len(sys.argv) > 2:  # a child: backend PORT or front MODE PORT BACKEND
        role = sys.argv[2]
        if role == "backend":
            asyncio.run(_backend(int(sys.argv[3])))
        else:
            asyncio.run(_front(sys.argv[3], int(sys.argv[4]), sys.argv[5]))
        return
    me = [sys.executable, __file__, "0"]
    backend_port = free_port()
    backend = subprocess.Popen([*me, "backend", str(backend_port)])
    fronts = {}
    try:
        for mode in ("threaded", "aio"):
            port = free_port()
            proc = subprocess.Popen([*me, "front", mode, str(port), f"127.0.0.1:{backend_port}"])
            fronts[mode] = (proc, port)
        time.sleep(3)
        for clients in (1, 32):
            for mode, (proc, port) in fronts.items():
                result = _drive(f"127.0.0.1:{port}", clients, seconds, [proc.pid, backend.pid])
                print(f"{mode:8s} {clients:2d} clients: {result}", flush=True)
    finally:
        for proc, _ in fronts.values():
            proc.terminate()
        backend.terminate()


if __name__ == "__main__":
    main()
