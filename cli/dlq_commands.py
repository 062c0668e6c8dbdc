"""`vitrine dlq list` and `vitrine dlq replay`: what was dead-lettered and why, and sending the
records whose failure may have passed back to the catalog topic."""

from __future__ import annotations

import argparse
import sys


def _settings():
    from services.ingestion.config import IngestionSettings
    from shared.settings import load_settings_or_exit

    return load_settings_or_exit(IngestionSettings)


def _cmd_list(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from shared.streaming.dlq import list_dead_letters

    s = _settings()
    try:
        letters = list_dead_letters(s.kafka_bootstrap_servers, s.dlq_topic, limit=args.limit)
    except KafkaError as e:
        print(f"error: broker {s.kafka_bootstrap_servers}: {e}", file=sys.stderr)
        return 1
    for d in letters:
        key = d.key.decode(errors="replace") if d.key else "-"
        kind = "transient" if d.transient else "poison"
        print(f"{d.partition}/{d.offset}\t{key[:60]}\t{kind}\t{d.reason[:300]}")
    print(f"{len(letters)} dead letters shown from {s.dlq_topic}", file=sys.stderr)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from kafka.errors import KafkaError

    from shared.streaming.dlq import replay

    s = _settings()
    try:
        report = replay(
            s.kafka_bootstrap_servers,
            s.dlq_topic,
            s.catalog_topic,
            group=f"{s.consumer_group}-dlq-replay",
            transient_only=not args.all,
            from_start=args.from_start,
            limit=args.limit,
        )
    except KafkaError as e:
        print(f"error: nothing committed, run it again: {e}", file=sys.stderr)
        return 1
    print(
        f"read {report.read} dead letters from {s.dlq_topic}: replayed {report.replayed} to "
        f"{s.catalog_topic}, skipped {report.skipped}"
        + ("" if args.all else " (not transient; --all replays them too)")
    )
    for reason, n in sorted(report.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  {n:6d}  {reason}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="list or replay the ingestion dead-letter topic")
    cmds = dlq.add_subparsers(dest="dlq_command", required=True)
    p = cmds.add_parser("list", help="print the dead letters with their reasons")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(func=_cmd_list)
    p = cmds.add_parser(
        "replay",
        help="send dead letters marked transient (timeouts, 5xx) back to the catalog topic, "
        "from where the last replay stopped",
    )
    p.add_argument(
        "--all", action="store_true", help="replay every dead letter, not only transient"
    )
    p.add_argument(
        "--from-start", action="store_true", help="from the topic's beginning, not the last replay"
    )
    p.add_argument("--limit", type=int, help="stop after this many dead letters")
    p.set_defaults(func=_cmd_replay)
