from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetReplicaInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Batching(_message.Message):
    __slots__ = ("max_batch_size", "batch_wait_timeout_s", "batches", "items", "mean_batch_size", "mean_queue_wait_ms", "mean_compute_ms")
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_WAIT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MEAN_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEAN_QUEUE_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MEAN_COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    max_batch_size: int
    batch_wait_timeout_s: float
    batches: int
    items: int
    mean_batch_size: float
    mean_queue_wait_ms: float
    mean_compute_ms: float
    def __init__(self, max_batch_size: _Optional[int] = ..., batch_wait_timeout_s: _Optional[float] = ..., batches: _Optional[int] = ..., items: _Optional[int] = ..., mean_batch_size: _Optional[float] = ..., mean_queue_wait_ms: _Optional[float] = ..., mean_compute_ms: _Optional[float] = ...) -> None: ...

class GetReplicaInfoResponse(_message.Message):
    __slots__ = ("application", "replica_id", "model_version", "dim", "runtime", "threads", "cpu_budget", "batching")
    APPLICATION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    CPU_BUDGET_FIELD_NUMBER: _ClassVar[int]
    BATCHING_FIELD_NUMBER: _ClassVar[int]
    application: str
    replica_id: str
    model_version: str
    dim: int
    runtime: str
    threads: int
    cpu_budget: float
    batching: Batching
    def __init__(self, application: _Optional[str] = ..., replica_id: _Optional[str] = ..., model_version: _Optional[str] = ..., dim: _Optional[int] = ..., runtime: _Optional[str] = ..., threads: _Optional[int] = ..., cpu_budget: _Optional[float] = ..., batching: _Optional[_Union[Batching, _Mapping]] = ...) -> None: ...
