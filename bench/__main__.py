"""`python -m bench [NAME ...]`: runs benchmarks and rewrites their sections in docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import re
from pathlib import Path

BENCHMARKS = ["conversions", "encoders", "vectorstore", "serving", "ingestion", "tracing"]
# Run only when named: they drive a platform that is already running (`make run`), and take the
# options after the name (`python -m bench load --seconds 5`).
ON_RUNNING_PLATFORM = ["load", "modes"]
# Run only when named: they read ../shared/data and a bundle trained on it.
ON_TEAM_DATA = ["runtimes"]
# Long runs (an hour on 2 cores), and a cluster of several Ray nodes, asked for by name only.
AT_SCALE = ["scale", "stream", "nodes"]
DOC = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Written by `make bench` (`python -m bench`). Each row compares a candidate with a baseline
measured in the same run and reports the ratio; absolute numbers drift by several times on these
shared 2-core machines, ratios much less.
"""


def _sections(text: str) -> dict[str, str]:
    parts = re.split(r"(?m)^(?=## )", text)
    return {p.splitlines()[0][3:].strip(): p.rstrip() + "\n" for p in parts if p.startswith("## ")}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=BENCHMARKS + ON_RUNNING_PLATFORM + ON_TEAM_DATA + AT_SCALE + [[]],
        help=f"default: all but {', '.join(ON_RUNNING_PLATFORM + ON_TEAM_DATA + AT_SCALE)}",
    )
    args, extra = parser.parse_known_args()
    takes_options = set(ON_RUNNING_PLATFORM + ON_TEAM_DATA)
    if extra and not set(args.names) & takes_options:
        parser.error(f"unknown arguments {extra}")
    existing = _sections(DOC.read_text()) if DOC.exists() else {}
    stamp = f"{dt.date.today()} on {platform.machine()}, {os.cpu_count()} CPUs"
    for name in args.names or BENCHMARKS:
        print(f"==> bench {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        section = module.run(extra) if name in takes_options else module.run()
        section.description += f" Measured {stamp}."
        markdown = section.to_markdown()
        print(markdown)
        existing[section.title] = markdown
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(HEADER + "\n" + "\n".join(existing.values()))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
