"""Conversions at every internal replica's info boundary (vitrine.replica.v1)."""

from __future__ import annotations

from shared.api.vitrine.replica.v1 import replica_pb2 as pb
from shared.types import BatchingInfo, ReplicaInfo

_BATCHING_FIELDS = tuple(BatchingInfo.__dataclass_fields__)


def info_request_to_proto(_: None = None) -> pb.GetReplicaInfoRequest:
    return pb.GetReplicaInfoRequest()


def info_request_from_proto(msg: pb.GetReplicaInfoRequest) -> None:
    return None


def info_to_proto(info: ReplicaInfo) -> pb.GetReplicaInfoResponse:
    msg = pb.GetReplicaInfoResponse(
        application=info.application,
        replica_id=info.replica_id,
        model_version=info.model_version,
        dim=info.dim,
        runtime=info.runtime,
        threads=info.threads,
        cpu_budget=info.cpu_budget,
    )
    if info.batching is not None:
        msg.batching.CopyFrom(
            pb.Batching(**{f: getattr(info.batching, f) for f in _BATCHING_FIELDS})
        )
    return msg


def info_from_proto(msg: pb.GetReplicaInfoResponse) -> ReplicaInfo:
    batching = (
        BatchingInfo(**{f: getattr(msg.batching, f) for f in _BATCHING_FIELDS})
        if msg.HasField("batching")
        else None
    )
    return ReplicaInfo(
        application=msg.application,
        replica_id=msg.replica_id,
        model_version=msg.model_version,
        dim=msg.dim,
        runtime=msg.runtime,
        threads=msg.threads,
        cpu_budget=msg.cpu_budget,
        batching=batching,
    )
