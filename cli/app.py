"""The `vitrine` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import version

from cli import (
    deploy_commands,
    dlq_commands,
    search_commands,
    serve_commands,
    status_commands,
    stream_commands,
    train_commands,
)
from operations.settings import PROCESS_SETTINGS
from shared.settings import SettingsError, load_settings


def _cmd_config(args: argparse.Namespace) -> int:
    """Validates and prints the settings each process would start with."""
    names = [args.process] if args.process else list(PROCESS_SETTINGS)
    failed = False
    for name in names:
        cls = PROCESS_SETTINGS[name]
        try:
            settings = load_settings(cls)
        except SettingsError as exc:
            print(f"[{name}] configuration error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"[{name}] {cls.__name__}")
        for field, env in cls.env_names().items():
            print(f"  {env:<36} = {getattr(settings, field)!r}")
        if (batching := _serve_config_batching(name)) is not None:
            print(f"  {'batching (Serve config user_config)':<36} = {batching}")
    return 2 if failed else 0


def _serve_config_batching(app_name: str) -> dict | None:
    """The dynamic batching deploy/serve/vitrine.yaml gives an application (its one home; a
    running replica's values: `vitrine serve status`)."""
    from cli.serve_commands import load_config

    for app in load_config()["applications"]:
        if app["name"] == app_name:
            return app["deployments"][0].get("user_config")
    return None


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
        "config", help="validate and show each process's settings (VITRINE_* variables)"
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
