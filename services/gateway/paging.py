"""Page tokens: the position of the next page of one query's ranking.

A token is base64url JSON `{"o": offset, "q": fingerprint}`. The fingerprint is a hash of
everything that defines the ranking (text, reference, filter, mode, RRF k, score threshold), so
a token passed with another query is refused instead of silently paging through something
else. Tokens are not secret and carry no state on the server: any gateway replica can answer
the next page.

What a page guarantees while ingestion runs: each page is the slice offset..offset+top_k of the
ranking as the store holds it when that page is asked for. A product written, deleted or
re-scored between two pages shifts the positions after it, so across pages it can repeat or be
skipped; within a page there are no duplicates. Products with exactly equal scores come in the
engine's order, which may differ between calls.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from shared.serving.errors import RequestError
from shared.types import SearchQuery

MAX_TOKEN_CHARS = 256


def fingerprint(query: SearchQuery) -> str:
    """A short hash of what defines the query's ranking (not its paging or top_k)."""
    image = hashlib.sha256(query.image).hexdigest() if query.image is not None else None
    mode = query.mode.value if query.mode is not None else None
    parts: list[object] = [
        query.text,
        image,
        query.product_id,
        repr(query.filter),
        mode,
        query.rrf_k,
    ]
    parts += [query.score_threshold, query.catalog]
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()
    return digest[:16]


def encode(offset: int, query: SearchQuery) -> str:
    raw = json.dumps({"o": offset, "q": fingerprint(query)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, query: SearchQuery) -> int:
    """The offset a token points at.

    Raises:
        RequestError: the token is malformed or belongs to another query.
    """
    if len(token) > MAX_TOKEN_CHARS:
        raise RequestError("page_token is not a token this API issued")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        fields = json.loads(raw)
        offset, print_ = fields["o"], fields["q"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise RequestError("page_token is not a token this API issued") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise RequestError("page_token is not a token this API issued")
    if print_ != fingerprint(query):
        raise RequestError(
            "page_token belongs to another query: page with the same text, reference, filter, "
            "mode and threshold that produced it"
        )
    return offset
