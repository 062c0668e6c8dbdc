"""What the gateway computes over a query's top candidates: facet counts, groups and the
adaptive cut-off. The same code serves both store backends (the Edge engine has no group query,
and both engines count facets under a filter only, not over one query's candidates).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from shared.types import Facet, Hit

FACET_VALUES = 20  # values kept per facet field, most frequent first
GAP_FACTOR = 2.0  # the adaptive cut-off's gap must exceed this many mean gaps


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _values(payload, field: str) -> list[str]:
    value = payload.get(field) if hasattr(payload, "get") else None
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [_text(v) for v in items if not isinstance(v, dict | list)]


def facets(hits: Sequence[Hit], fields: Sequence[str]) -> tuple[Facet, ...]:
    """Per field, how many of `hits` carry each value (a list payload counts each item), most
    frequent first, then by value; at most FACET_VALUES values."""
    out = []
    for field in fields:
        counts = Counter(v for h in hits for v in set(_values(h.payload, field)))
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:FACET_VALUES]
        out.append(Facet(field, tuple(ranked)))
    return tuple(out)


def grouped(hits: Sequence[Hit], field: str, size: int) -> list[Hit]:
    """`hits` in order, keeping at most `size` per value of `field`; a hit without the field is
    a group of its own."""
    seen: Counter = Counter()
    kept = []
    for h in hits:
        values = _values(h.payload, field)
        key = values[0] if values else ("", h.product_id)
        if seen[key] < size:
            seen[key] += 1
            kept.append(h)
    return kept


def cut_at_gap(hits: Sequence[Hit], *, factor: float = GAP_FACTOR) -> list[Hit]:
    """`hits` up to their largest score gap, when that gap is more than `factor` times the mean
    gap between neighbours; all of them otherwise (a smooth curve has no natural end)."""
    if len(hits) < 3:
        return list(hits)
    gaps = [a.score - b.score for a, b in zip(hits, hits[1:], strict=False)]
    mean = sum(gaps) / len(gaps)
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    if mean <= 0 or gaps[widest] <= factor * mean:
        return list(hits)
    return list(hits[: widest + 1])
