"""Cost of carrying a batch of embeddings through a proto message and back.

Candidate: `shared.conversions.image_encoder` (numpy -> repeated Embedding -> wire -> numpy).
Baseline: the floor for moving the same floats, numpy `tobytes` -> `frombuffer` with no proto.
"""

from __future__ import annotations

import numpy as np

from bench.harness import Row, Section, p50, time_calls
from shared.api.vitrine.image_encoder.v1 import image_encoder_pb2 as pb
from shared.conversions import image_encoder
from shared.types import Embeddings


def _proto_round_trip(result: Embeddings) -> np.ndarray:
    wire = image_encoder.response_to_proto(result).SerializeToString()
    return image_encoder.response_from_proto(pb.EmbedImagesResponse.FromString(wire)).vectors


def _bytes_round_trip(result: Embeddings) -> np.ndarray:
    raw = result.vectors.tobytes()
    return np.frombuffer(raw, dtype=np.float32).reshape(result.vectors.shape)


def run() -> Section:
    section = Section(
        title="Embedding conversions (foundation)",
        command=".venv/bin/python -m bench conversions",
        description=(
            "Encode a batch of float32 embeddings into the encoder's response message, serialize, "
            "parse and decode back to numpy, against copying the same floats as raw bytes. "
            "Median of 200 calls each."
        ),
    )
    rng = np.random.default_rng(0)
    for batch, dim in [(1, 256), (32, 256), (256, 256)]:
        result = Embeddings(rng.standard_normal((batch, dim)).astype(np.float32), "bench")
        assert np.array_equal(_proto_round_trip(result), result.vectors)
        proto_ms = p50(time_calls(lambda r=result: _proto_round_trip(r), repeat=200))
        raw_ms = p50(time_calls(lambda r=result: _bytes_round_trip(r), repeat=200))
        section.rows.append(
            Row(f"proto round trip [{batch}x{dim}]", "raw bytes copy", raw_ms, proto_ms, "ms")
        )
    return section
