"""`vitrine broker`, `vitrine publish` and `vitrine ingest`: the streaming side of the catalog."""

from __future__ import annotations

import argparse
import sys
import time


def _cmd_broker(args: argparse.Namespace) -> int:
    import signal

    from operations.broker import BrokerError, LocalBroker

    # SIGTERM unwinds like Ctrl-C, so the broker (its own process group) is stopped too; if this
    # process is killed instead, the kernel kills the broker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    broker = LocalBroker(port=args.port, parent_death_signal=signal.SIGKILL)
    try:
        broker.start()
    except BrokerError as e:  # its port is taken (by whom), or it did not start
        print(f"vitrine broker: {e}", file=sys.stderr)
        return 2
    try:
        print(
            f"Kafka-protocol broker (Tansu, in-memory) on {broker.bootstrap_servers}; "
            "Ctrl-C stops it",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from services.ingestion.config import IngestionSettings
    from shared.data.sources import SourceError, describe, load_source
    from shared.observability import tracing
    from shared.settings import load_settings_or_exit
    from shared.streaming.events import ensure_topics, product_events, publish, wait_consumed
    from training.config import TrainingSettings

    settings = load_settings_or_exit(IngestionSettings)
    tracing.setup("publish", settings.tracing())
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    topic = args.topic or settings.catalog_topic
    try:
        print(f"reading {args.source} ({describe(args.source)})", flush=True)
        cache_dir = load_settings_or_exit(TrainingSettings).cache_dir  # where synthetic:N goes
        products = load_source(args.source, cache_dir=cache_dir)
    except (SourceError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if settings.create_topics:
        ensure_topics(bootstrap, {topic: settings.catalog_partitions})
    published = publish(
        product_events(products, inline_images=not args.uri, catalog=args.catalog),
        bootstrap_servers=bootstrap,
        topic=topic,
        as_json=args.json,
        total=len(products),
    )
    print(f"published {published.count} events to {topic} on {bootstrap}")
    if args.wait:
        behind = wait_consumed(
            bootstrap, settings.consumer_group, published.next_offsets, timeout_s=args.timeout
        )
        if behind:
            print(
                f"error: {behind} events still not indexed after {args.timeout:.0f} s",
                file=sys.stderr,
            )
            return 1
        print(f"indexed: consumer group {settings.consumer_group} has committed every event")
    return 0


def _cmd_ingest(_: argparse.Namespace) -> int:
    from services.ingestion.app import main

    main()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the local Kafka-protocol broker (Tansu) until Ctrl-C")
    p.add_argument("--port", type=int, default=9092, help="loopback port (0: a free one)")
    p.set_defaults(func=_cmd_broker)
    p = sub.add_parser(
        "publish",
        help="publish a catalog as catalog events (products.jsonl, FashionIQ folder, image "
        "folder, or synthetic:N)",
    )
    p.add_argument(
        "source",
        help="a products.jsonl or a folder with one, a FashionIQ folder, a folder of images, "
        "or synthetic:N (N generated garments per category)",
    )
    p.add_argument("--json", action="store_true", help="JSON values instead of protobuf")
    p.add_argument("--uri", action="store_true", help="file:// image URIs instead of inline bytes")
    p.add_argument(
        "--catalog",
        default="",
        help="the catalog (tenant) the products belong to (default: the default catalog)",
    )
    p.add_argument("--topic", help="default: VITRINE_INGESTION_CATALOG_TOPIC")
    p.add_argument("--bootstrap-servers", help="default: VITRINE_INGESTION_KAFKA_BOOTSTRAP_SERVERS")
    p.add_argument(
        "--wait",
        action="store_true",
        help="then wait until the ingestion workers (VITRINE_INGESTION_CONSUMER_GROUP) committed "
        "it all",
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds --wait waits at most")
    p.set_defaults(func=_cmd_publish)
    p = sub.add_parser(
        "ingest",
        help="run an ingestion worker: catalog events -> image encoder -> vector store "
        "(VITRINE_* settings: `vitrine config ingestion`)",
    )
    p.set_defaults(func=_cmd_ingest)
