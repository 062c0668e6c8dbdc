"""Checks the installed environment after `make install`: the CPU torch build, no CUDA packages."""

from __future__ import annotations

import sys
from importlib import metadata

import torch

errors = []
if torch.__version__ != "2.13.0+cpu":
    errors.append(f"torch is {torch.__version__}, expected the CPU build 2.13.0+cpu")
cuda = sorted(
    d.metadata["Name"]
    for d in metadata.distributions()
    if d.metadata["Name"] and d.metadata["Name"].lower().startswith(("nvidia-", "cuda-", "triton"))
)
if cuda:
    errors.append(f"CUDA packages installed: {', '.join(cuda)}")
if errors:
    sys.exit("install check failed:\n  " + "\n  ".join(errors))
print(f"install check: torch {torch.__version__}, no CUDA packages")
