"""The `vitrine` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from cli import (
    deploy_commands,
    dlq_commands,
    rollout_commands,
    search_commands,
    serve_commands,
    status_commands,
    store_commands,
    stream_commands,
    train_commands,
)
from operations.serve import load_config
from operations.settings import PROCESS_SETTINGS, settings_in_force
from shared.settings import SettingsError


def _cmd_config(args: argparse.Namespace) -> int:
    """Validates and prints the settings each process would start with, and their sources."""
    names = [args.process] if args.process else list(PROCESS_SETTINGS)
    serve_config = load_config()
    failed = False
    for name in names:
        try:
            rows = settings_in_force(name, serve_config=serve_config)
        except SettingsError as exc:
            print(f"[{name}] configuration error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"[{name}] {PROCESS_SETTINGS[name].__name__}")
        width = max(len(row.name) for row in rows)
        for row in rows:
            print(f"  {row.name:<{width}}  {row.source:<24}  {row.value}")
    return 2 if failed else 0


def _cmd_version(_: argparse.Namespace) -> int:
    print(f"vitrine {version('vitrine')}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    """Runs `python -m bench` from the source tree (benchmarks are not part of the package)."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").is_file():
        print(f"vitrine bench: no bench/ next to {root / 'services'}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "bench", *args.names], cwd=root)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitrine", description="Multimodal product-image retrieval platform."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "config",
        help="validate and show what each process starts with: its VITRINE_* variables and "
        "Serve config values, with their sources",
    )
    p.add_argument(
        "process", nargs="?", choices=sorted(PROCESS_SETTINGS), help="one process (default: all)"
    )
    p.set_defaults(func=_cmd_config)

    train_commands.register(sub)
    serve_commands.register(sub)
    stream_commands.register(sub)
    dlq_commands.register(sub)
    search_commands.register(sub)
    status_commands.register(sub)
    deploy_commands.register(sub)
    store_commands.register(sub)
    rollout_commands.register(sub)

    p = sub.add_parser(
        "bench",
        help="run the benchmarks (bench/) and rewrite their sections of docs/BENCHMARKS.md",
    )
    p.add_argument(
        "names",
        nargs=argparse.REMAINDER,
        metavar="NAME",
        help="conversions, encoders, vectorstore, serving, ingestion (default: all); load (the "
        "running platform under 1-64 concurrent clients, options after it: --seconds, --rounds)",
    )
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("version", help="print the installed version")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
