"""The one gRPC client of each internal service, for every caller.

The gateway dials the targets Serve publishes from inside the cluster; the ingestion worker,
`vitrine index`, `vitrine serve status` and bench dial fixed addresses (Serve's gRPC proxy).
Either way a client keeps one channel per target, spreads calls round-robin, sends the internal
token, passes the caller's remaining deadline on as the call's timeout, and turns gRPC statuses
into this library's exceptions (base.exception_of; shared.serving.errors). The one-item methods
a query uses (`embed`, `fuse`, `search`, `vector_of`) coalesce concurrent queries' items into
shared calls (shared.serving.coalescing). The clients are async; a synchronous caller runs them
on a LoopThread (blocking.py).
"""

from shared.serving.clients.base import ServiceClient, exception_of
from shared.serving.clients.blocking import LoopThread, shared_loop
from shared.serving.clients.encoders import FusionClient, ImageEncoderClient, TextEncoderClient
from shared.serving.clients.replica import ReplicaInfoClient
from shared.serving.clients.store import VectorStoreClient

__all__ = [
    "FusionClient",
    "ImageEncoderClient",
    "LoopThread",
    "ReplicaInfoClient",
    "ServiceClient",
    "TextEncoderClient",
    "VectorStoreClient",
    "exception_of",
    "shared_loop",
]
