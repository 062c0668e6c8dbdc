"""What a running platform listens on, and whether a socket refuses a caller without the
internal credential (issue 17: closed by default)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import grpc
import psutil

from shared.api.vitrine.replica.v1 import replica_pb2, replica_pb2_grpc

INTERNAL_APPS = ("image-encoder", "text-encoder", "fusion", "vector-store")
# What each Serve replica's inter-deployment gRPC server (bound on "[::]:0") serves.
SERVE_HANDLE_METHOD = "/ray.serve.ASGIService/HandleRequest"
NOTHING_SERVED = {"NOT_FOUND", "UNIMPLEMENTED"}


@dataclass(frozen=True)
class Listening:
    ip: str
    port: int
    pid: int
    process: str

    @property
    def loopback(self) -> bool:
        ip = self.ip.removeprefix("::ffff:")
        return ipaddress.ip_address(ip).is_loopback

    def __str__(self) -> str:
        return f"{self.ip}:{self.port} ({self.process}, pid {self.pid})"


def listening(processes: list[psutil.Process]) -> list[Listening]:
    """Every TCP socket these processes listen on."""
    found = []
    for proc in processes:
        try:
            name = " ".join(proc.cmdline())[:80] or proc.name()
            conns = proc.net_connections(kind="inet")
        except psutil.Error:  # exited meanwhile
            continue
        found += [
            Listening(c.laddr.ip, c.laddr.port, proc.pid, name)
            for c in conns
            if c.status == psutil.CONN_LISTEN
        ]
    return sorted(found, key=lambda s: s.port)


def external_address() -> str:
    """An address of this machine other than loopback (what another host would dial)."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family.name == "AF_INET" and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return "127.0.0.1"


def unauthenticated_answers(target: str, *, timeout_s: float = 10) -> dict[str, str]:
    """Probe -> the status a call without any credential gets at `target`: GetReplicaInfo for
    each application (proxies and direct-ingress ports route by it), and the method of Serve's
    inter-deployment server (which Ray's token authentication guards)."""
    answers = {}
    with grpc.insecure_channel(target) as channel:
        stub = replica_pb2_grpc.ReplicaServiceStub(channel)
        calls = {
            app: lambda app=app: stub.GetReplicaInfo(
                replica_pb2.GetReplicaInfoRequest(),
                metadata=(("application", app),),
                timeout=timeout_s,
            )
            for app in (*INTERNAL_APPS, "gateway")
        }
        asgi = channel.unary_unary(SERVE_HANDLE_METHOD)
        calls["serve-handle"] = lambda: asgi(b"", timeout=timeout_s)
        for probe, call in calls.items():
            try:
                call()
                answers[probe] = "OK"
            except grpc.RpcError as e:
                answers[probe] = f"{e.code().name}: {e.details()}"
    return answers


def refused(answers: dict[str, str]) -> bool:
    """Nothing answered, and the socket either asked for a credential or serves none of the
    probed services (NOT_FOUND, UNIMPLEMENTED: e.g. the gateway's own direct-ingress port)."""
    # Serve routes a registered method name to the application's deployment method of that
    # name; the gateway has none of them, so its direct-ingress port answers UNKNOWN "does not
    # exist" to every internal method.
    codes = {
        "NOT_FOUND" if "that does not exist" in a else a.split(":", 1)[0] for a in answers.values()
    }
    return "OK" not in codes and ("UNAUTHENTICATED" in codes or codes <= NOTHING_SERVED)
