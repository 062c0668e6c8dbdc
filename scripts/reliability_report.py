"""Renders the reliability tests' JSON-lines report as the results table of docs/RELIABILITY.md.

Usage: python scripts/reliability_report.py REPORT.jsonl [docs/RELIABILITY.md]
Replaces the text between the `<!-- results -->` and `<!-- /results -->` markers.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

START, END = "<!-- results -->", "<!-- /results -->"
SKIP = {"test", "cases", "outcomes", "fuzzed"}


def render(lines: list[dict]) -> str:
    total = sum(line["cases"] for line in lines)
    fuzzed = sum(line["cases"] for line in lines if line.get("fuzzed"))
    rows = [
        "| Test | Cases | Outcome |",
        "|---|---:|---|",
    ]
    for line in lines:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(line["outcomes"].items()))
        extra = ", ".join(f"{k} {v}" for k, v in line.items() if k not in SKIP)
        rows.append(
            f"| {line['test']} | {line['cases'] or ''} | {'; '.join(x for x in (outcomes, extra) if x)} |"
        )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [f"Written by `make chaos` on {stamp}: {total} cases, {fuzzed} of them fuzzed.", "", *rows]
    )


def main(argv: list[str]) -> int:
    report = Path(argv[1])
    doc = Path(argv[2] if len(argv) > 2 else "docs/RELIABILITY.md")
    lines = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
    text = doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{START}\n{render(lines)}\n{END}{tail}")
    print(f"wrote {len(lines)} results to {doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
