"""The client of vitrine.replica.v1, which every internal service's replicas answer."""

from __future__ import annotations

from shared.api.vitrine.replica.v1 import replica_pb2_grpc
from shared.conversions import replica as replica_conv
from shared.serving.clients.base import ServiceClient
from shared.types import ReplicaInfo


class ReplicaInfoClient(ServiceClient):
    """What the replicas of one application run with (runtime, threads, batching in force)."""

    def __init__(self, app_name: str, **kw) -> None:
        super().__init__(app_name, replica_pb2_grpc.ReplicaServiceStub, **kw)

    async def info(self, *, timeout_s: float | None = None) -> ReplicaInfo:
        """One replica's (the next target's)."""
        reply = await self.call(
            "GetReplicaInfo", replica_conv.info_request_to_proto(), timeout_s=timeout_s
        )
        return replica_conv.info_from_proto(reply)

    async def info_each(
        self, *, timeout_s: float | None = None
    ) -> list[tuple[str, ReplicaInfo | Exception]]:
        """(target, its ReplicaInfo or the exception its call raised) for every target: each
        replica under Serve's direct ingress, else each proxy (which picks a replica)."""
        replies = await self.call_each(
            "GetReplicaInfo", replica_conv.info_request_to_proto(), timeout_s=timeout_s
        )
        return [
            (target, reply if isinstance(reply, Exception) else replica_conv.info_from_proto(reply))
            for target, reply in replies
        ]
