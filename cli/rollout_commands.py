"""`vitrine rollout BUNDLE` and `vitrine rollback`: argument parsing over operations.rollout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _report(verb: str, switched) -> None:
    print(
        f"{verb}: the gateway serves model {switched.model_version} from the {switched.slot} "
        f"slot ({switched.points} points); model {switched.previous_model_version} stays "
        "deployed for `vitrine rollback`"
        if verb == "rolled out"
        else f"{verb}: the gateway serves model {switched.model_version} from the "
        f"{switched.slot} slot ({switched.points} points)"
    )


def _cmd_rollout(args: argparse.Namespace) -> int:
    from operations.rollout import RolloutError, rollout
    from operations.serve import connect_ray
    from shared.settings import SettingsError

    connect_ray()
    try:
        switched = rollout(Path(args.bundle), share_cpus=not args.keep_cpus, timeout_s=args.timeout)
    except (RolloutError, FileNotFoundError, SettingsError, RuntimeError) as e:
        print(f"vitrine rollout: {e}", file=sys.stderr)
        return 1
    _report("rolled out", switched)
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    from operations.rollout import RolloutError, rollback
    from operations.serve import connect_ray

    connect_ray()
    try:
        switched = rollback(timeout_s=args.timeout)
    except (RolloutError, RuntimeError) as e:
        print(f"vitrine rollback: {e}", file=sys.stderr)
        return 1
    _report("rolled back", switched)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rollout",
        help="serve a new model bundle: fill its collection from the catalog topic beside the "
        "serving model, then switch the gateway with no failed query",
    )
    p.add_argument("bundle", help="the new model bundle's directory")
    p.add_argument(
        "--timeout", type=float, default=1800, help="seconds to deploy and catch up (1800)"
    )
    p.add_argument(
        "--keep-cpus",
        action="store_true",
        help="give the new slot's replicas the serving slot's CPUs (default: none, sharing the "
        "cores of a machine the serving slot holds)",
    )
    p.set_defaults(func=_cmd_rollout)
    p = sub.add_parser("rollback", help="serve the model the last rollout switched from")
    p.add_argument("--timeout", type=float, default=600, help="seconds to switch (600)")
    p.set_defaults(func=_cmd_rollback)
