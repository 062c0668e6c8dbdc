"""Text queries at 1 and 32 clients against the platform of whichever tree is on PYTHONPATH (not a
`python -m bench` benchmark: it compares two versions of the code, run one after the other).

    git worktree add /tmp/before COMMIT
    for tree in /tmp/before $PWD $PWD /tmp/before; do
      (cd $tree && PYTHONPATH=$tree $OLDPWD/.venv/bin/python $OLDPWD/bench/text_load_once.py)
    done

Deploys every application with the packaged backbones and untrained heads and 2,000 products
(as `bench tracing`), runs 3 load runs of 6 s per client count, and prints the medians as JSON
on its last line (RESULT {...}). docs/BENCHMARKS.md, "Tracing off against before it".

It builds its Serve config itself rather than through bench.serving.platform_config: it must
also run against trees older than that helper.
"""

import asyncio
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("VITRINE_BENCH_CATALOG", "2000")
from bench.harness import p50, p99, start_ray
from bench.load_generator import collect_workload, run_load
from bench.serving import _bundle, _fill_catalog
from operations.local_ray import stop_local_ray
from operations.ports import free_port
from operations.serve import deploy, load_config
from shared.serving import apps


def main() -> None:
    import shared

    print("code from", Path(shared.__file__).parent, flush=True)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bundle = _bundle(root)
        start_ray()
        try:
            port = free_port()
            config = load_config(
                common_args={"bundle_path": str(bundle)},
                http_port=free_port(),
                proxy_grpc_port=free_port(),
                gateway_grpc_port=port,
            )
            for app in config["applications"]:
                if app["name"] == apps.GATEWAY:
                    app["args"]["http_port"] = free_port()
                if app["name"] == apps.VECTOR_STORE:
                    app["args"]["store_location"] = f"edge:{root / 'store'}"
            deploy(config, timeout_s=600, progress=False)
            asyncio.run(_fill_catalog())
            target = f"127.0.0.1:{port}"
            workload = collect_workload(target, "")
            for n in (1, 32):
                runs = [
                    run_load(target, "text", n, seconds=6, workload=workload, api_key="")
                    for _ in range(3)
                ]
                out[n] = {
                    "p50": statistics.median(p50(r.latencies_ms) for r in runs),
                    "p99": statistics.median(p99(r.latencies_ms) for r in runs),
                    "qps": statistics.median(r.qps for r in runs),
                    "errors": sum(sum(r.errors.values()) for r in runs),
                }
        finally:
            stop_local_ray()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
