"""Calls to the gateway's HTTP API: every answer, an error's too, is JSON."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple


class JsonReply(NamedTuple):
    status: int
    body: Any  # the parsed JSON
    headers: dict[str, str]


def request_json(
    url: str,
    body: bytes | dict | None = None,
    *,
    headers: dict[str, str] | None = None,
    ca: Path | None = None,
    timeout_s: float = 30,
) -> JsonReply:
    """GET `url`, or POST `body` (bytes as they are, a dict as JSON) with a JSON content type.

    Args:
        ca: the CA that signed the server's certificate, for https.

    Raises:
        json.JSONDecodeError: the answer (error or not) is not JSON.
    """
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(
        url, data, {"content-type": "application/json", **(headers or {})}
    )
    context = ssl.create_default_context(cafile=str(ca)) if ca is not None else None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as r:
            return JsonReply(r.status, json.loads(r.read()), dict(r.headers))
    except urllib.error.HTTPError as e:
        return JsonReply(e.code, json.loads(e.read()), dict(e.headers))
