"""The README quick start, executed: the commands in its block are the commands run.

`make run` (the block's first line) brings the whole platform up on its default public ports,
publishes the demo catalog and says "searchable"; each following line of the block then runs as
shown and must succeed (the CLI search must return the expected demo product); the web page the
README points to is driven in headless Chromium; Ctrl-C to `make run`'s process group must leave
no process behind.

Only what keeps the test from touching the developer's own `make run` state is changed, through
the environment: the bundle (the session's `demo_bundle`, trained by the same `vitrine train`
command `make run` runs when it has none), the store, log and Ray directories, the Ray head's
ports and the replicas' port ranges.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from operations.ports import free_port, private_port_ranges
from tests.support.webdriver import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PUBLIC_PORTS = {"HTTP": 8000, "gRPC": 9000, "broker": 9092, "Serve gRPC": 9100, "metrics": 9102}
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def quickstart() -> tuple[list[str], str]:
    """The commands of the README's quick-start block (comments stripped) and the web page URL
    the section shows."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README's quick start has no ```bash block"
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    url = re.search(r"http://127\.0\.0\.1:\d+/", section)
    assert url, "README's quick start shows no web page URL"
    return [c for c in commands if c and not c.startswith("#")], url.group(0)


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Running:
    proc: subprocess.Popen
    env: dict[str, str]
    log: Path
    processes: list[psutil.Process]  # make run's descendants once searchable
    url: str
    commands: list[str]
    catalog: Path  # the demo products.jsonl `make run` published (the bundle's training data)

    def products(self) -> list[dict]:
        lines = self.catalog.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def running(demo_bundle, tmp_path_factory, short_tmpdir):
    commands, url = quickstart()
    assert commands[0] == "make run", f"the quick start must begin with `make run`: {commands}"
    busy = {name: port for name, port in PUBLIC_PORTS.items() if _port_busy(port)}
    assert not busy, f"ports in use, stop your own `make run` first: {busy}"
    root = tmp_path_factory.mktemp("quickstart")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_SERVE_DIRECT", "RAY_ADDRESS", "RAY_AUTH_MODE"))
    }
    env.update(
        VITRINE_BUNDLE_PATH=str(demo_bundle.path),
        VITRINE_TRAIN_CACHE_DIR=str(demo_bundle.cache_dir),
        VITRINE_VECTOR_STORE_STORE_LOCATION=f"edge:{root / 'store'}",
        VITRINE_LOG_DIR=str(root / "logs"),
        RAY_TMPDIR=short_tmpdir("ray-run"),
        VITRINE_RAY_PORT=str(free_port()),
        VITRINE_RAY_ARGS=f"--ray-client-server-port={free_port()} "
        f"--dashboard-agent-listen-port={free_port()}",
    )
    # Direct-ingress replica ports away from the session's own cluster (tests/conftest.py).
    private_port_ranges(env, slot=50 + os.getpid() % 50)
    log = root / "make-run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", commands[0]],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a terminal would make
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 900
        while "==> searchable" not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"make run exited {proc.returncode}:\n{_tail(log)}"
            assert time.monotonic() < deadline, f"make run not searchable:\n{_tail(log)}"
            time.sleep(1)
        processes = psutil.Process(proc.pid).children(recursive=True)
        # The commands after `make run` find its Ray head as a second terminal would when it is
        # the only Ray on the machine; here the session's own cluster runs beside it.
        env = {**env, "RAY_ADDRESS": f"127.0.0.1:{env['VITRINE_RAY_PORT']}"}
        manifest = json.loads((demo_bundle.path / "manifest.json").read_text())
        catalog = Path(manifest["training"]["data"]["path"]) / "products.jsonl"
        yield Running(proc, env, log, processes, url, commands, catalog)
    finally:
        if proc.poll() is None:  # a test failed before Ctrl-C: stop it all the same
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def _tail(path: Path, n: int = 6000) -> str:
    return path.read_text(errors="replace")[-n:]


def _run(command: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, (
        f"`{command}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def _is_red_checked_shirt(title: str) -> bool:
    return bool(re.search(r"\bred\b", title, re.I) and re.search(r"check", title, re.I)) and (
        "shirt" in title.lower()
    )


def test_make_run_prints_where_to_search(running):
    text = running.log.read_text(errors="replace")
    for shown in ("web page:", "gRPC search:", "CLI search:", "Ctrl-C stops everything"):
        assert shown in text
    assert running.url in text


def test_quickstart_commands_succeed_and_search_finds_the_demo_product(running):
    """Every command after `make run`, as shown; the search returns a red checked shirt first."""
    searched = False
    for command in running.commands[1:]:
        out = _run(command, running.env)
        if " search " in f" {command} ":
            rows = [line for line in out.splitlines() if re.match(r"\s*\d+\s+\d\.\d{3}\s", line)]
            assert rows, out
            top_title = rows[0].split(None, 3)[3]
            assert _is_red_checked_shirt(top_title), out
            searched = True
    assert searched, "the quick start shows no `vitrine search`"


def test_status_reports_the_catalog_and_no_lag(running):
    out = _run(".venv/bin/vitrine status --json", running.env)
    checks = {c["component"]: c for c in json.loads(out)}
    assert checks["gateway"]["state"] == "SERVING"
    assert checks["catalog"]["state"] == f"{len(running.products())} products"
    assert checks["ingestion"]["state"] == "lag 0"
    assert checks["dead letters"]["state"] == "0"
    assert all(c["ok"] for c in checks.values()), checks
    assert {"serve gateway", "serve image-encoder", "serve vector-store"} <= set(checks)


def test_web_page_in_headless_chromium(running):
    """Text search, a filter, and an uploaded reference image, on the page the README points
    to."""
    found = find_chromium()
    if found is None:
        install_log = ROOT / ".venv" / "opt" / "chromium-install.log"
        why = install_log.read_text().strip() if install_log.exists() else "not installed"
        pytest.skip(
            f"chromium/chromedriver not on PATH ({why}); `make tools` installs them as root"
        )
    products = running.products()
    log = Path(running.env["VITRINE_LOG_DIR"]) / "chromedriver.log"
    with Browser(*found, log_path=log) as b:
        b.get(running.url)
        meta = b.wait_for(
            "document.getElementById('meta').textContent.includes('products')"
            " && document.getElementById('meta').textContent"
        )
        assert meta.startswith(f"{len(products)} products"), meta

        def search(text: str) -> list[dict]:
            b.script(
                "document.getElementById('q').value = '';"
                "document.getElementById('results').replaceChildren();"
            )
            if text:
                b.type(b.find("#q"), text)
            b.click(b.find("#search"))
            b.wait_for(
                "document.querySelectorAll('#results .hit').length > 0"
                " || document.getElementById('error').textContent"
            )
            error = b.script("return document.getElementById('error').textContent;")
            assert not error, error
            # Thumbnails are lazy <img>s: naturalWidth is 0 until the first one has decoded,
            # which a busy machine may not have done when the hits appear.
            b.wait_for(
                "[...document.querySelectorAll('#results .hit img')].slice(0, 1)"
                ".every(i => i.complete)"
            )
            return b.script(
                "return [...document.querySelectorAll('#results .hit')].map(h => ({"
                "id: h.dataset.productId, title: h.querySelector('.title').textContent, "
                "score: h.querySelector('.score').textContent, "
                "img: (h.querySelector('img') || {}).naturalWidth || 0}));"
            )

        hits = search("red checked shirt")
        assert _is_red_checked_shirt(hits[0]["title"]), hits[:3]
        assert hits[0]["score"].startswith("score 0.") and hits[0]["img"] > 0  # thumbnail shown
        assert "hybrid" in b.script("return document.getElementById('status').textContent;")
        b.screenshot(SCREENSHOTS / "web-text-search.png")

        # Paging: the next page continues the ranking, and the address holds the offset.
        b.script("document.getElementById('top-k').value = '10';")
        first = search("shirt")
        assert len(first) == 10 and b.script("return !document.getElementById('next').disabled;")
        b.script("document.getElementById('results').replaceChildren();")
        b.click(b.find("#next"))
        b.wait_for("document.querySelectorAll('#results .hit').length > 0")
        second = b.script(
            "return [...document.querySelectorAll('#results .hit')].map(h => h.dataset.productId);"
        )
        assert second and not set(second) & {h["id"] for h in first}
        assert "offset=10" in b.script("return location.search;")

        # Facets: counts over the top candidates; a click filters by the value.
        b.get(running.url)
        b.wait_for("document.getElementById('meta').textContent.includes('products')")
        hits = search("shirt")
        facets = b.script(
            "return [...document.querySelectorAll('#facets .facet')].map(f => ({"
            "field: f.dataset.field, value: f.dataset.value, "
            "count: Number(f.querySelector('.count').textContent)}));"
        )
        colours = [f for f in facets if f["field"] == "baseColour"]
        assert colours and all(f["count"] > 0 for f in colours), facets
        b.script("document.getElementById('results').replaceChildren();")
        b.script(
            "[...document.querySelectorAll('#facets .facet')]"
            ".find(f => f.dataset.field === 'baseColour').click();"
        )
        b.wait_for("document.querySelectorAll('#results .hit').length > 0")
        by_id = {p["id"]: p for p in products}
        shown = b.script(
            "return [...document.querySelectorAll('#results .hit')].map(h => h.dataset.productId);"
        )
        assert all(by_id[pid]["baseColour"] == colours[0]["value"] for pid in shown), shown
        b.click(b.find("#filters .filter button"))  # remove the facet's filter

        # More like this: the product becomes an example, and is not among the results.
        hits = search("shirt")
        liked = hits[0]["id"]
        b.click(b.find("#results .hit .more"))
        b.wait_for(
            f"document.getElementById('examples').textContent.includes('{liked}')"
            " && document.querySelectorAll('#results .hit').length > 0"
            f" && ![...document.querySelectorAll('#results .hit')]"
            f".some(h => h.dataset.productId === '{liked}')"
        )
        shown = b.script(
            "return [...document.querySelectorAll('#results .hit')].map(h => h.dataset.productId);"
        )
        assert liked not in shown and f"more={liked}" in b.script("return location.search;")
        assert liked in b.script("return document.getElementById('examples').textContent;")

        # A shared address restores the search (text, mode, page size) and runs it.
        b.get(running.url.rstrip("/") + "/?q=red+checked+shirt&mode=lexical&k=10")
        b.wait_for("document.querySelectorAll('#results .hit').length > 0")
        assert b.script("return document.getElementById('mode').value;") == "lexical"
        assert b.script("return document.getElementById('q').value;") == "red checked shirt"
        assert "lexical" in b.script("return document.getElementById('status').textContent;")
        b.script("document.getElementById('mode').value = '';")

        # A filter: only black products.
        b.click(b.find("#add-filter"))
        b.type(b.find("#filters .key"), "baseColour")
        b.type(b.find("#filters .value"), "Black")
        hits = search("checked shirt")
        by_id = {p["id"]: p for p in products}
        assert hits and all(by_id[h["id"]]["baseColour"] == "Black" for h in hits), hits
        b.click(b.find("#filters .filter button"))  # remove it

        # An uploaded reference image and no text: the product itself comes first.
        target = products[7]
        b.type(b.find("#image"), str(running.catalog.parent / target["image"]))
        b.wait_for("document.getElementById('reference').style.display === 'inline-flex'")
        hits = search("")
        assert hits[0]["id"] == target["id"], (target, hits[:3])
        b.screenshot(SCREENSHOTS / "web-image-search.png")
        b.click(b.find("#clear-reference"))
    assert (SCREENSHOTS / "web-text-search.png").stat().st_size > 10_000


def _status(env: dict[str, str]) -> tuple[int, dict]:
    proc = subprocess.run(
        [".venv/bin/vitrine", "status", "--json", "--no-serve", "--timeout", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.returncode, {c["component"]: c for c in json.loads(proc.stdout)}


def _worker(env: dict[str, str]) -> psutil.Process:
    """The ingestion worker: the process on its metrics port."""
    from operations.process import listeners

    [worker] = listeners(int(env.get("VITRINE_INGESTION_METRICS_PORT", PUBLIC_PORTS["metrics"])))
    return psutil.Process(worker.pid)


def test_a_hung_worker_is_not_ok_and_a_killed_one_is_restarted(running):
    """SIGSTOP: `vitrine status` exits 1 and calls ingestion DEAD (its metrics do not answer).
    SIGKILL: make run's supervisor says so, starts a new worker, and status is ok again."""
    worker = _worker(running.env)
    assert "ingest" in " ".join(worker.cmdline())
    worker.suspend()
    try:
        code, checks = _status(running.env)
    finally:
        worker.resume()
    assert code == 1 and checks["ingestion"]["state"] == "DEAD", checks
    assert "not answering" in checks["ingestion"]["detail"]

    worker.kill()
    deadline = time.monotonic() + 300
    while True:
        assert time.monotonic() < deadline, f"no new worker:\n{_tail(running.log)}"
        try:
            restarted = _worker(running.env)
        except ValueError:  # no listener yet
            restarted = None
        if restarted is not None and restarted.pid != worker.pid:
            code, checks = _status(running.env)
            if code == 0:
                break
        time.sleep(1)
    assert checks["ingestion"]["ok"] and checks["ingestion"]["state"] == "lag 0", checks
    said = running.log.read_text(errors="replace")
    assert f"ingestion worker (pid {worker.pid}) exited with SIGKILL" in said
    assert "restart 1 in 1 s" in said


def test_make_run_is_closed_by_default(running):
    """Every socket make run's processes listen on is on loopback, or is the public gateway, or
    refuses a call without the internal token (UNAUTHENTICATED, shown for each); and the Ray
    cluster refuses a driver without its token."""
    from tests.support.sockets import INTERNAL_APPS, external_address, listening, refused
    from tests.support.sockets import unauthenticated_answers as answers_at

    sockets = listening([psutil.Process(running.proc.pid), *_descendants(running.proc.pid)])
    public = {PUBLIC_PORTS["HTTP"], PUBLIC_PORTS["gRPC"]}
    exposed = [s for s in sockets if not s.loopback and s.port not in public]
    assert any(s.loopback for s in sockets) and exposed, [str(s) for s in sockets]
    host = external_address()
    answers = {s: answers_at(f"{host}:{s.port}") for s in exposed}
    open_ = {str(s): a for s, a in answers.items() if not refused(a)}
    assert not open_, f"answers without a credential: {open_}"
    for app in (*INTERNAL_APPS, "serve-handle"):  # each check was met at least once
        assert any(a[app].startswith("UNAUTHENTICATED") for a in answers.values()), app
    ray_port = running.env["VITRINE_RAY_PORT"]
    connect = f"import ray; ray.init(address='127.0.0.1:{ray_port}'); print('CONNECTED')"
    for auth in (
        {"RAY_AUTH_MODE": "disabled"},
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "x" * 32},
    ):
        env = {**running.env, **auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # loopback head
        out = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-c", connect],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode != 0 and "CONNECTED" not in out.stdout, (
            auth,
            out.stdout,
            out.stderr[-2000:],
        )


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_ctrl_c_leaves_no_process(running):
    """Last: SIGINT to the process group, as Ctrl-C in a terminal; nothing of ours survives
    (the broker's Tansu included, in a session of its own)."""
    assert running.proc.poll() is None, _tail(running.log)
    now = psutil.Process(running.proc.pid).children(recursive=True)
    running.processes.extend(p for p in now if p not in running.processes)  # a restarted worker
    names = sorted({p.name() for p in running.processes if p.is_running()})
    assert len(running.processes) >= 5, names  # broker, Ray, replicas, worker, ...
    assert any("tansu" in name for name in names), names
    os.killpg(running.proc.pid, signal.SIGINT)
    assert running.proc.wait(120) is not None
    deadline = time.monotonic() + 60
    while True:
        alive = [
            p for p in running.processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        ]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not alive, [(p.pid, p.name(), " ".join(p.cmdline())[:200]) for p in alive]
    busy = {name: port for name, port in PUBLIC_PORTS.items() if _port_busy(port)}
    assert not busy, busy
    assert "==> stopping" in running.log.read_text(errors="replace")
