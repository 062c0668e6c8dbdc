"""`vitrine snapshot` and `vitrine restore`: argument parsing over operations.snapshots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.serving.apps import VECTOR_STORE


def _open(args: argparse.Namespace):
    """The store the command works on: the engine at --location (a stopped platform), else the
    running platform's vector-store application."""
    from operations import store_access
    from services.vector_store.config import VectorStoreSettings
    from shared.settings import load_settings

    if args.location:
        settings = load_settings(VectorStoreSettings)
        return store_access.LocalStore(
            args.location,
            bundle=args.bundle or settings.bundle_path,
            indexed_fields=settings.indexed_fields,
        )
    from operations.indexing import proxy_address
    from operations.serve import connect_ray, internal_token

    if args.address is None:
        connect_ray()  # to ask Serve where its gRPC proxy listens
    address = args.address or proxy_address()
    return store_access.RemoteStore(address, app_name=args.store_app, token=internal_token())


def _run(args: argparse.Namespace, work) -> int:
    from operations.snapshots import SnapshotError
    from shared.serving.errors import DependencyError, RequestError
    from shared.settings import SettingsError

    try:
        store = _open(args)
    except (SettingsError, FileNotFoundError, ValueError, DependencyError, RuntimeError) as e:
        print(f"vitrine {args.command}: cannot open the store: {e}", file=sys.stderr)
        return 2
    try:
        summary = work(store)
    except (SnapshotError, RequestError, DependencyError, TimeoutError, OSError) as e:
        print(f"vitrine {args.command}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    line = f"{summary.points} points and {summary.tombstones} tombstones of model "
    line += f"{summary.model_version}"
    if args.command == "snapshot":
        print(f"wrote {summary.path}: {line}")
    else:
        print(f"restored {summary.path}: {line} ({summary.written} written, {summary.stale} stale)")
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from operations.snapshots import write_snapshot

    return _run(args, lambda store: write_snapshot(store, Path(args.path)))


def _cmd_restore(args: argparse.Namespace) -> int:
    from operations.snapshots import SnapshotError, check_snapshot, restore_snapshot

    try:
        check_snapshot(Path(args.path))  # a bad file is refused before the store is touched
    except SnapshotError as e:
        print(f"vitrine restore: {e}", file=sys.stderr)
        return 1
    return _run(args, lambda store: restore_snapshot(store, Path(args.path), merge=args.merge))


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--location",
        help="work on the store at this location (edge:PATH, ...) in this process, with the "
        "platform stopped; default: the running platform's store, over gRPC",
    )
    p.add_argument(
        "--bundle", help="with --location: the model bundle (default: VITRINE_BUNDLE_PATH)"
    )
    p.add_argument(
        "--address",
        help="host:port of Serve's gRPC proxy (default: the running Serve's, asked of Ray)",
    )
    p.add_argument(
        "--store-app", default=VECTOR_STORE, help=f"the vector-store application ({VECTOR_STORE})"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snapshot",
        help="back up the vector store into one file: every point with its vector, payload "
        "and version, and every delete's tombstone",
    )
    p.add_argument("path", help="the snapshot file to write (gzip JSON lines)")
    _store_options(p)
    p.set_defaults(func=_cmd_snapshot)
    p = sub.add_parser(
        "restore", help="write a snapshot into an empty vector store (of the same model)"
    )
    p.add_argument("path", help="a file `vitrine snapshot` wrote")
    p.add_argument(
        "--merge",
        action="store_true",
        help="restore into a store that holds points: the newer version of each product wins",
    )
    _store_options(p)
    p.set_defaults(func=_cmd_restore)
