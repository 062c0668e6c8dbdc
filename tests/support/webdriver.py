"""Headless Chromium through chromedriver's W3C WebDriver HTTP API (no selenium needed).

Debian's packages `chromium` and `chromium-driver` (`make tools` installs them when it can). The
machine has no network, so Chromium starts with its background networking off.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from operations.ports import free_port

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--window-size=1280,1000",
]


def find_chromium() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


class WebDriverError(RuntimeError):
    pass


class Browser:
    """One chromedriver process and one headless Chromium session with a fresh profile."""

    def __init__(self, chromium: str, chromedriver: str, *, log_path: Path) -> None:
        self._port = free_port()
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self._driver = subprocess.Popen(
            [chromedriver, f"--port={self._port}"], stdout=self._log, stderr=subprocess.STDOUT
        )
        self._profile = tempfile.mkdtemp(prefix="vitrine-chromium-")
        self._base = f"http://127.0.0.1:{self._port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (OSError, WebDriverError):
                pass
            if time.monotonic() > deadline or self._driver.poll() is not None:
                self.close()
                raise WebDriverError(f"chromedriver did not start (log: {log_path})")
            time.sleep(0.2)
        caps = {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}"],
            },
        }
        try:
            session = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
        except Exception:
            self.close()
            raise
        self._session = f"/session/{session['sessionId']}"

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self._base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as e:
            value = json.load(e).get("value", {})
            raise WebDriverError(
                f"{value.get('error')}: {value.get('message', '')[:500]}"
            ) from None

    def get(self, url: str) -> None:
        self._call("POST", f"{self._session}/url", {"url": url})

    def find(self, css: str) -> str:
        found = self._call(
            "POST", f"{self._session}/element", {"using": "css selector", "value": css}
        )
        return found[ELEMENT]

    def type(self, element: str, text: str) -> None:
        self._call("POST", f"{self._session}/element/{element}/value", {"text": text})

    def click(self, element: str) -> None:
        self._call("POST", f"{self._session}/element/{element}/click", {})

    def script(self, source: str, *args):
        """Runs JavaScript in the page; `return` gives the value back."""
        return self._call(
            "POST", f"{self._session}/execute/sync", {"script": source, "args": list(args)}
        )

    def wait_for(self, source: str, *, timeout_s: float = 30):
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.script(f"return ({source});")
            if value:
                return value
            if time.monotonic() > deadline:
                raise WebDriverError(f"timed out waiting for {source}")
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        png = base64.b64decode(self._call("GET", f"{self._session}/screenshot"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return path

    def close(self) -> None:
        try:
            if getattr(self, "_session", None):
                self._call("DELETE", self._session)
        except (OSError, WebDriverError):
            pass
        finally:
            self._driver.terminate()
            try:
                self._driver.wait(10)
            except subprocess.TimeoutExpired:
                self._driver.kill()
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
