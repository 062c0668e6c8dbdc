"""`vitrine deploy serve-config|nodes-config|render|check`: the Kubernetes manifests under
deploy/k8s, and the Serve config of a Ray cluster of several nodes without Kubernetes.

- `serve-config` renders deploy/serve/vitrine.yaml for Kubernetes (the one Serve config, with
  the placement that only a cluster has) into the files the RayServices embed;
- `nodes-config` prints deploy/serve/vitrine.yaml placed on node roles (the gateway and the store
  on the node offering `vitrine_head`, the models on nodes offering `vitrine_model`);
- `render` prints an overlay (kustomize, from the pinned kubectl wheel);
- `check` renders every overlay and validates what comes out (`operations.k8s_checks` has the checks).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from operations.profiles import (
    K8S_DIR,
    OVERLAYS,
    SERVE_CONFIG_FILES,
    render_serve_config,
    stale_serve_configs,
)
from operations.serve import ROOT


def _cmd_serve_config(args: argparse.Namespace) -> int:
    if args.check:
        stale = stale_serve_configs()
        for name in stale:
            print(f"stale: {name} (run `make k8s-serve-config`)", file=sys.stderr)
        return 1 if stale else 0
    for profile, path in SERVE_CONFIG_FILES.items():
        path.write_text(render_serve_config(profile))
        print(f"wrote {path.relative_to(ROOT)} (profile {profile})")
    return 0


def _cmd_nodes_config(args: argparse.Namespace) -> int:
    import yaml

    from operations.profiles import place_on_nodes
    from operations.serve import load_config

    text = yaml.safe_dump(place_on_nodes(load_config()), sort_keys=False, width=100)
    if args.output is None:
        print(text, end="")
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from operations.k8s_checks import kustomize

    print(kustomize(K8S_DIR / "overlays" / args.overlay), end="")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    from operations.k8s_checks import check_overlay

    unknown = sorted(set(args.overlays) - set(OVERLAYS))
    if unknown:
        print(f"vitrine deploy check: unknown overlays {unknown}; choose from {OVERLAYS}")
        return 2
    failed = False
    for path in stale_serve_configs():
        print(f"FAIL serve config {path} is stale (run `make k8s-serve-config`)")
        failed = True
    for overlay in args.overlays or OVERLAYS:
        report = check_overlay(K8S_DIR / "overlays" / overlay, k8s_version=args.kubernetes)
        status = "FAIL" if report.problems else "ok  "
        print(f"{status} {overlay}: {report.summary()}")
        for problem in report.problems:
            print(f"     - {problem}")
        failed |= bool(report.problems)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    deploy = sub.add_parser(
        "deploy", help="Kubernetes manifests: render and validate"
    ).add_subparsers(dest="deploy_command", required=True, metavar="SUBCOMMAND")
    p = deploy.add_parser(
        "serve-config", help="render deploy/serve/vitrine.yaml into the RayServices' Serve configs"
    )
    p.add_argument("--check", action="store_true", help="only report files that are stale")
    p.set_defaults(func=_cmd_serve_config)

    p = deploy.add_parser(
        "nodes-config",
        help="print deploy/serve/vitrine.yaml placed on the node roles of a cluster of several "
        "Ray nodes (docs/DEPLOY.md)",
    )
    p.add_argument("--output", type=Path, help="write it here instead of printing it")
    p.set_defaults(func=_cmd_nodes_config)

    p = deploy.add_parser("render", help="print an overlay's objects (kustomize)")
    p.add_argument("overlay", choices=OVERLAYS)
    p.set_defaults(func=_cmd_render)

    p = deploy.add_parser(
        "check",
        help="render every overlay; validate objects, Serve import paths and environment",
    )
    p.add_argument("overlays", nargs="*", metavar="OVERLAY", help=f"default: {' '.join(OVERLAYS)}")
    p.add_argument(
        "--kubernetes", default="1.30", help="oldest Kubernetes version to validate against"
    )
    p.set_defaults(func=_cmd_check)
