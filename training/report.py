"""Evaluation reports: JSON, a PNG of the R@K / P@K / F1@K curves, and Markdown tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROW_TITLES = {
    "text_to_image_own": "text->image (own image)",
    "text_to_image_attribute": "text->image (attribute relevance)",
    "text_to_image_captions": "text->image (every caption, own image)",
    "composed/fusion": "composed: learned fusion",
    "composed/sum": "composed: sum fusion",
    "composed/image_only": "composed: image only",
    "composed/text_only": "composed: text only",
    "shopper_words": "shopper words, 3 phrasings (dense)",
    "composed_reworded/fusion": "composed, held-out phrasings: learned fusion",
    "composed_reworded/sum": "composed, held-out phrasings: sum fusion",
    "composed_type/fusion": "composed, type change: learned fusion",
    "composed_type/sum": "composed, type change: sum fusion",
    "composed_type/image_only": "composed, type change: image only",
    "composed_gender/fusion": "composed, gender change: learned fusion",
    "composed_gender/sum": "composed, gender change: sum fusion",
    "composed_gender/image_only": "composed, gender change: image only",
    "search_modes/dense": "shopper words: dense",
    "search_modes/lexical": "shopper words: lexical (BM25, titles)",
    "search_modes/hybrid": "shopper words: hybrid (RRF)",
}


def flat_rows(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{"text_to_image_own": {...}, "composed/fusion": {...}, ...} from an evaluation result."""
    rows = {k: v for k, v in metrics.items() if k in ROW_TITLES}
    for group in ("composed", "composed_reworded", "composed_type", "composed_gender"):
        for method, values in metrics.get(group, {}).items():
            if f"{group}/{method}" in ROW_TITLES:
                rows[f"{group}/{method}"] = values
    for mode, values in metrics.get("search_modes", {}).items():
        if f"search_modes/{mode}" in ROW_TITLES:
            rows[f"search_modes/{mode}"] = values
    return rows


def markdown_table(metrics: dict[str, Any], *, ks: tuple[int, ...] = (5, 10, 20, 50)) -> str:
    header = "| query set | " + " | ".join(f"{m}@{k}" for k in ks for m in ("R", "P", "F1")) + " |"
    lines = [header, "|---|" + "---|" * (3 * len(ks))]
    for key, values in flat_rows(metrics).items():
        cells = " | ".join(f"{values[f'{m}@{k}']:.3f}" for k in ks for m in ("R", "P", "F1"))
        lines.append(f"| {ROW_TITLES[key]} | {cells} |")
    return "\n".join(lines)


def compare_table(
    results: list[dict[str, Any]], *, names: list[str], measures: tuple[str, ...] = ("R", "P", "F1")
) -> str:
    """Bundles side by side: one row per query set any of them has, one column per bundle and
    measure @10; the best value of each row and measure in bold."""
    header = "| query set | " + " | ".join(f"{n} {m}@10" for m in measures for n in names) + " |"
    lines = [header, "|---|" + "---|" * (len(measures) * len(names))]
    per_bundle = [flat_rows(r) for r in results]
    keys = [k for k in ROW_TITLES if any(k in rows for rows in per_bundle)]
    for key in keys:
        cells = []
        for m in measures:
            values = [rows.get(key, {}).get(f"{m}@10") for rows in per_bundle]
            best = max((v for v in values if v is not None), default=None)
            cells += [
                "-"
                if v is None
                else (f"**{v:.3f}**" if v == best and len(values) > 1 else f"{v:.3f}")
                for v in values
            ]
        lines.append(f"| {ROW_TITLES[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(metrics: dict[str, Any], path: Path, *, title: str = "") -> Path:
    """Writes a PNG with R@K, P@K and F1@K against K, one line per query set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = flat_rows(metrics)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, measure in zip(axes, ("R", "P", "F1"), strict=True):
        for key, values in rows.items():
            ks = sorted(int(k.split("@")[1]) for k in values if k.startswith(f"{measure}@"))
            ax.plot(ks, [values[f"{measure}@{k}"] for k in ks], marker="o", label=ROW_TITLES[key])
        ax.set_xlabel("K")
        ax.set_ylabel(f"{measure}@K")
        ax.set_title(f"{measure}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(metrics: dict[str, Any], out_dir: Path, *, title: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "metrics.json"
    json_path.write_text(json.dumps(metrics, indent=2, sort_keys=True))
    paths = {"json": json_path}
    if flat_rows(metrics):
        paths["png"] = plot_curves(metrics, out_dir / "curves.png", title=title)
        (out_dir / "table.md").write_text(markdown_table(metrics) + "\n")
        paths["markdown"] = out_dir / "table.md"
    return paths
