"""The internal credential of the test session (tests/conftest.py sets it for the whole session:
its Ray, the Serve replicas and every subprocess inherit it)."""

from __future__ import annotations

import os

from shared.serving.auth import InternalToken


def internal_metadata(app_name: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a call to an internal service: its application and the session's token."""
    token = InternalToken.load(
        env_text=os.environ.get("VITRINE_INTERNAL_TOKEN"),
        file=os.environ.get("VITRINE_INTERNAL_TOKEN_FILE"),
    )
    assert token is not None, "tests/conftest.py sets VITRINE_INTERNAL_TOKEN"
    return token.metadata(app_name)
