"""`vitrine search`: a query against the gateway's gRPC SearchService, results as a table."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from operations.search import client_channel
from shared.types import Condition, Filter, Range, SearchMode, SearchQuery


def parse_condition(text: str) -> Condition:
    """`key=value` (keyword, or integer when it looks like one), `key=a,b` (any of),
    `key=LOW..HIGH` (numeric range, either side may be empty).

    Raises:
        ValueError: not of the form key=value.
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value:
        raise ValueError(f"{text!r}: expected key=value, key=a,b or key=LOW..HIGH")
    key = key.strip()
    if ".." in value:
        low, _, high = value.partition("..")
        try:
            return Condition(
                key, Range(gte=float(low) if low else None, lte=float(high) if high else None)
            )
        except ValueError:
            raise ValueError(f"{text!r}: a range needs numbers, like year=2018..2020") from None
    if "," in value:
        return Condition(key, tuple(v.strip() for v in value.split(",") if v.strip()))
    if value.lstrip("-").isdigit():
        return Condition(key, int(value))
    return Condition(key, value)


def _cmd_search(args: argparse.Namespace) -> int:
    import grpc

    from services.gateway.config import GatewaySettings
    from shared.api.vitrine.search.v1 import search_pb2_grpc
    from shared.conversions import search as conv
    from shared.settings import load_settings_or_exit

    try:
        query = _query(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    address = args.gateway or f"127.0.0.1:{load_settings_or_exit(GatewaySettings).grpc_port}"
    try:
        channel = client_channel(address, ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    with channel:
        try:
            reply = search_pb2_grpc.SearchServiceStub(channel).Search(
                conv.request_to_proto(query), timeout=args.timeout, metadata=metadata
            )
        except grpc.RpcError as e:
            print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    _print_result(conv.response_from_proto(reply), args)
    return 0


def _query(args: argparse.Namespace) -> SearchQuery:
    """Raises ValueError (a bad filter, nothing to search by) or OSError (an unreadable image)."""
    flt = Filter(
        must=tuple(parse_condition(c) for c in args.filter),
        must_not=tuple(parse_condition(c) for c in args.exclude),
    )
    image = Path(args.image).read_bytes() if args.image else None
    if not (args.text or image or args.product or args.like):
        raise ValueError("give a text, --image PATH, --product ID or --like ID")
    return SearchQuery(
        args.text or "",
        image,
        args.product,
        args.top_k,
        flt,
        mode=SearchMode(args.mode) if args.mode else None,
        rrf_k=args.rrf_k,
        offset=args.offset,
        page_token=args.page_token or "",
        score_threshold=args.min_score,
        catalog=args.catalog,
        facets=tuple(args.facet),
        group_by=args.group_by or "",
        group_size=args.group_size,
        adaptive_cutoff=args.cutoff,
        diversity=args.diversity,
        positive_ids=tuple(args.like),
        negative_ids=tuple(args.unlike),
        negative_text=args.unwanted or "",
        text_weight=args.text_weight,
    )


def _print_result(result, args: argparse.Namespace) -> None:
    if args.json:
        dropped = set() if args.with_thumbnails else {"thumbnail"}
        hits = [
            {
                "product_id": h.product_id,
                "score": h.score,
                "payload": {k: v for k, v in h.payload.items() if k not in dropped},
            }
            for h in result.hits
        ]
        print(
            json.dumps(
                {
                    "hits": hits,
                    "model_version": result.model_version,
                    "mode": result.mode.value if result.mode else None,
                    "next_page_token": result.next_page_token,
                    "facets": {f.field: dict(f.values) for f in result.facets},
                },
                indent=2,
            )
        )
        return
    print(f"{'#':>3}  {'score':>6}  {'product':<24} title")
    for rank, hit in enumerate(result.hits, 1):
        title = str(hit.payload.get("title", ""))
        print(f"{rank:>3}  {hit.score:>6.3f}  {hit.product_id:<24} {title}")
    t = result.timing
    print(
        f"{len(result.hits)} hits in {t.total_ms:.0f} ms (encode {t.encode_ms:.0f}, fuse "
        f"{t.fuse_ms:.0f}, search {t.search_ms:.0f}); {_mode_name(result.mode)}; model "
        f"{result.model_version}"
    )
    for facet in result.facets:
        counts = " · ".join(f"{value} {count}" for value, count in facet.values)
        print(f"{facet.field} (top {result.candidates}): {counts or 'none'}")
    if result.next_page_token:
        print(f"next page: --page-token {result.next_page_token}")


def _mode_name(mode: SearchMode | None) -> str:
    return f"{mode.value} mode" if mode else "mode not reported"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="search the catalog: text, an image, a product, or an image plus text"
    )
    p.add_argument("text", nargs="?", help="query text, or the modifier of a composed query")
    p.add_argument("--image", help="a reference image file (composed with the text if given)")
    p.add_argument("--product", help="a catalog product id whose image is the reference")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep hits whose payload matches: key=value, key=a,b (any of), key=LOW..HIGH",
    )
    p.add_argument("--exclude", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--mode",
        choices=[m.value for m in SearchMode],
        help="match the words by the text embedding (dense), BM25 over titles (lexical) or "
        "both fused (hybrid); default: the gateway's (hybrid for text-only queries)",
    )
    p.add_argument("--catalog", default="", help="the catalog (tenant) to search")
    _register_refinements(p)
    p.add_argument("--rrf-k", type=int, default=0, help="hybrid's RRF k (0: the gateway's)")
    p.add_argument("--offset", type=int, default=0, help="hits to skip")
    p.add_argument("--page-token", help="the next page of an earlier search (it prints one)")
    p.add_argument(
        "--min-score", type=float, help="leave out hits scoring below this (the mode's score)"
    )
    p.add_argument(
        "--gateway",
        help="host:port of the gRPC gateway (default: 127.0.0.1:VITRINE_GATEWAY_GRPC_PORT)",
    )
    p.add_argument("--timeout", type=float, default=30, help="deadline in seconds")
    p.add_argument(
        "--api-key",
        default=os.environ.get("VITRINE_API_KEY"),
        help="the gateway's API key (default: $VITRINE_API_KEY; prefer the variable, since "
        "arguments show in process lists)",
    )
    p.add_argument("--tls-ca", metavar="PEM", help="CA of the gateway's certificate: use TLS")
    p.add_argument("--tls-cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--tls-key", metavar="PEM", help="client certificate's key (mTLS)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--with-thumbnails",
        action="store_true",
        help="keep each hit's inline thumbnail (a data: URI) in the JSON",
    )
    p.set_defaults(func=_cmd_search)


def _register_refinements(p: argparse.ArgumentParser) -> None:
    """Facets, groups, cut-off, diversity and examples (vitrine.search.v1.SearchRequest)."""
    p.add_argument(
        "--facet", action="append", default=[], metavar="FIELD",
        help="count this field's values over the top candidates (repeatable)",
    )  # fmt: skip
    p.add_argument("--group-by", metavar="FIELD", help="at most --group-size hits per value")
    p.add_argument("--group-size", type=int, default=0, help="hits per group (default 1)")
    p.add_argument("--cutoff", action="store_true", help="end at the largest score gap")
    p.add_argument("--diversity", type=float, default=0.0, help="MMR, 0 (off) to 1")
    p.add_argument(
        "--like", action="append", default=[], metavar="ID", help="more like this product"
    )
    p.add_argument(
        "--unlike", action="append", default=[], metavar="ID", help="less like this product"
    )
    p.add_argument("--not", dest="unwanted", metavar="TEXT", help="words hits should not match")
    p.add_argument(
        "--text-weight", type=float, help="composed: (1-w) * reference + w * text, not the fusion"
    )
