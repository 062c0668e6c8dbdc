"""The batches of one training epoch, and the learning-rate schedule."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from training.examples import sample_composed, sample_words

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.loop import TrainInputs


def schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to zero: the multiplier of each group's base lr."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def blocked_permutation(keys: np.ndarray, run: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation of range(len(keys)) made of runs of up to `run` positions that share
    a key, the runs in random order; `run` <= 1: a plain permutation. Global batches are
    contiguous blocks of the permutation, so each batch holds whole runs: hard negatives (the
    same articleType) for every query in them."""
    if run <= 1:
        return rng.permutation(len(keys))
    pieces: list[np.ndarray] = []
    for key in np.unique(keys):
        members = rng.permutation(np.flatnonzero(keys == key))
        pieces += [members[i : i + run] for i in range(0, len(members), run)]
    if not pieces:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([pieces[i] for i in rng.permutation(len(pieces))])


def epoch_batches(
    inputs: TrainInputs, cfg: TrainConfig, *, epoch: int, rank: int, world: int
) -> list[dict[str, np.ndarray]]:
    """This worker's batches for one epoch; all workers draw from one seeded permutation."""
    ex = inputs.examples
    rng = np.random.default_rng([cfg.optim.seed, epoch])
    # Equal shards (the remainder is dropped), so every rank's batches have equal shapes:
    # the loss gathers embeddings across ranks.
    # With same_type_run, runs of products of one articleType share each batch.
    run, types = cfg.optim.same_type_run, ex.type_groups
    products = blocked_permutation(types, run, rng)
    products = products[: len(products) // world * world][rank::world]
    positions = blocked_permutation(types[ex.composed.references], run, rng)
    positions = positions[: len(positions) // world * world][rank::world]
    worded = blocked_permutation(types[ex.words.products], run, rng)
    worded = worded[: len(worded) // world * world][rank::world]
    per_worker = max(2, cfg.optim.batch_size // world)
    steps = max(1, math.ceil(len(products) / per_worker))
    batches = []
    for s in range(steps):
        idx = products[s * per_worker : (s + 1) * per_worker]
        pos = positions[s * per_worker : (s + 1) * per_worker] if len(positions) else positions
        refs, mods, targets = sample_composed(ex.composed, pos, rng)
        words_products, words = sample_words(
            ex.words, worded[s * per_worker : (s + 1) * per_worker], rng
        )
        if len(idx) >= 2:
            batches.append(
                {
                    "products": idx,
                    "refs": refs,
                    "mods": mods,
                    "targets": targets,
                    "words_products": words_products,
                    "words": words,
                }
            )
    return batches
