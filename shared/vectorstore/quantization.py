"""Vector quantization of a collection, the same choice for both engines: the embedded Qdrant
Edge and a Qdrant server (qdrant-client).

Quantized vectors are kept in RAM and searched first; the original vectors rescore the
`oversampling` x top-k best candidates, so the ranking returned is by exact cosine. Measured at
a million vectors in docs/BENCHMARKS.md ("A million products"), which sets the default
(`VITRINE_VECTOR_STORE_QUANTIZATION`).
"""

from __future__ import annotations

from typing import Any

QUANTIZATIONS = ("none", "int8", "binary", "turbo4")
# Candidates rescored with the original vectors, as a multiple of the results asked for.
OVERSAMPLING = {"int8": 1.5, "binary": 3.0, "turbo4": 2.0}


def check(name: str) -> str:
    if name not in QUANTIZATIONS:
        raise ValueError(f"quantization {name!r}: use one of {', '.join(QUANTIZATIONS)}")
    return name


def edge_config(name: str) -> Any:
    """Qdrant Edge's quantization config for a new shard; None for none."""
    import qdrant_edge as qe

    check(name)
    return {
        "none": lambda: None,
        "int8": lambda: qe.ScalarQuantizationConfig(
            type=qe.ScalarType.Int8, quantile=0.99, always_ram=True
        ),
        "binary": lambda: qe.BinaryQuantizationConfig(always_ram=True),
        "turbo4": lambda: qe.TurboQuantQuantizationConfig(
            always_ram=True, bits=qe.TurboQuantBitSize.Bits4
        ),
    }[name]()


def edge_search(name: str) -> Any:
    """Qdrant Edge's search-time quantization params; None for none."""
    import qdrant_edge as qe

    if name == "none":
        return None
    return qe.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING[name])


def qdrant_config(name: str) -> Any:
    """qdrant-client's quantization config for a new collection; None for none."""
    from qdrant_client import models as qm

    check(name)
    return {
        "none": lambda: None,
        "int8": lambda: qm.ScalarQuantization(
            scalar=qm.ScalarQuantizationConfig(
                type=qm.ScalarType.INT8, quantile=0.99, always_ram=True
            )
        ),
        "binary": lambda: qm.BinaryQuantization(
            binary=qm.BinaryQuantizationConfig(always_ram=True)
        ),
        "turbo4": lambda: qm.TurboQuantization(
            turbo=qm.TurboQuantQuantizationConfig(always_ram=True, bits=qm.TurboQuantBitSize.BITS4)
        ),
    }[name]()


def qdrant_search(name: str) -> Any:
    """qdrant-client's search-time quantization params; None for none."""
    from qdrant_client import models as qm

    if name == "none":
        return None
    return qm.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING[name])
