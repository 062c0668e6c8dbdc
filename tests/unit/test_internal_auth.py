"""The internal credential the internal services check, and production's refusal to run open."""

from __future__ import annotations

import asyncio
import os

import grpc
import psutil
import pytest

from services.gateway.security import open_gateway_problem
from shared.serving.auth import (
    INTERNAL_TOKEN_HEADER,
    NO_INTERNAL_TOKEN,
    InternalToken,
    UnauthenticatedError,
    caller_internal_token,
    service_internal_token,
)
from shared.serving.errors import grpc_method
from shared.settings import InternalCallSettings, SettingsError, load_settings

TOKEN = "t" * 40


class FakeContext:
    def __init__(self, metadata=()) -> None:
        self._metadata, self.code, self.details = list(metadata), None, None

    def invocation_metadata(self):
        return self._metadata

    def set_code(self, code) -> None:
        self.code = code

    def set_details(self, details) -> None:
        self.details = details


class Service:
    def __init__(self, token: InternalToken | None) -> None:
        self._internal_token = token

    @grpc_method
    async def Echo(self, request):  # noqa: N802
        return request


def call(service: Service, context: FakeContext | None):
    return asyncio.run(service.Echo("ping", grpc_context=context))


def test_a_call_with_the_token_is_answered():
    md = InternalToken(TOKEN).metadata("fusion")
    assert ("application", "fusion") in md
    assert call(Service(InternalToken(TOKEN)), FakeContext(md)) == "ping"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ((("application", "fusion"),), "missing internal credential"),
        (((INTERNAL_TOKEN_HEADER, "x" * 40),), "invalid internal credential"),
        (((INTERNAL_TOKEN_HEADER, ""),), "invalid internal credential"),
    ],
)
def test_a_call_without_the_token_is_unauthenticated(metadata, message):
    context = FakeContext(metadata)
    with pytest.raises(UnauthenticatedError, match=message) as e:
        call(Service(InternalToken(TOKEN)), context)
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    assert TOKEN not in str(e.value) and TOKEN not in (context.details or "")


def test_a_service_without_a_token_refuses_every_call():
    context = FakeContext(InternalToken(TOKEN).metadata("fusion"))
    with pytest.raises(UnauthenticatedError):
        call(Service(None), context)
    assert context.code == grpc.StatusCode.UNAUTHENTICATED
    assert context.details == NO_INTERNAL_TOKEN


def test_a_handle_call_has_no_grpc_context_and_is_let_through():
    # Handles are Ray actor calls, guarded by Ray's own token authentication.
    assert call(Service(InternalToken(TOKEN)), None) == "ping"


def test_bytes_metadata_is_accepted():
    token = InternalToken(TOKEN)
    token.check([(INTERNAL_TOKEN_HEADER, TOKEN.encode())])


def test_the_token_never_shows():
    token = InternalToken(TOKEN)
    assert TOKEN not in repr(token) and TOKEN not in str(token)


def test_token_sources(tmp_path):
    assert InternalToken.load(env_text=None, file=None) is None
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    InternalToken.load(env_text=None, file=str(path)).check([(INTERNAL_TOKEN_HEADER, TOKEN)])
    with pytest.raises(ValueError, match="not both"):
        InternalToken.load(env_text=TOKEN, file=str(path))
    with pytest.raises(ValueError, match="shorter than 32"):
        InternalToken.load(env_text="short", file=None)
    with pytest.raises(ValueError, match="internal token file"):
        InternalToken.load(env_text=None, file=str(tmp_path / "missing"))


def _settings(monkeypatch, **env) -> InternalCallSettings:
    for name in ("VITRINE_ENVIRONMENT", "VITRINE_INTERNAL_TOKEN", "VITRINE_INTERNAL_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(InternalCallSettings)


def test_services_refuse_to_start_without_a_token_in_production_only(monkeypatch):
    assert service_internal_token(_settings(monkeypatch), service="fusion") is None
    with pytest.raises(ValueError, match="production needs an internal token"):
        service_internal_token(
            _settings(monkeypatch, VITRINE_ENVIRONMENT="production"), service="fusion"
        )
    prod = _settings(monkeypatch, VITRINE_ENVIRONMENT="production", VITRINE_INTERNAL_TOKEN=TOKEN)
    assert service_internal_token(prod, service="fusion") is not None


def test_callers_always_need_the_token(monkeypatch):
    with pytest.raises(ValueError, match="VITRINE_INTERNAL_TOKEN"):
        caller_internal_token(_settings(monkeypatch), caller="the gateway")


def test_open_gateway_problem():
    assert (
        open_gateway_problem(
            environment="development", keys_configured=False, allow_unauthenticated=False
        )
        is None
    )
    assert "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED" in open_gateway_problem(
        environment="production", keys_configured=False, allow_unauthenticated=False
    )
    for keys, allow in ((True, False), (False, True)):
        assert not open_gateway_problem(
            environment="production", keys_configured=keys, allow_unauthenticated=allow
        )


@pytest.fixture
def production(monkeypatch):
    _settings(monkeypatch, VITRINE_ENVIRONMENT="production")
    for name in (
        "VITRINE_GATEWAY_API_KEYS",
        "VITRINE_GATEWAY_API_KEYS_FILE",
        "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_production_gateway_refuses_to_start_without_api_keys(production):
    from services.gateway.app import build_app

    production.setenv("VITRINE_INTERNAL_TOKEN", TOKEN)
    with pytest.raises(SettingsError, match="no API keys"):
        build_app({})
    production.setenv("VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED", "true")
    build_app({})  # open on purpose
    production.delenv("VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED")
    production.setenv("VITRINE_GATEWAY_API_KEYS", "shop:" + "k" * 20)
    build_app({})


def test_production_gateway_refuses_to_start_without_an_internal_token(production):
    from services.gateway.app import build_app

    production.setenv("VITRINE_GATEWAY_API_KEYS", "shop:" + "k" * 20)
    with pytest.raises(SettingsError, match="internal token"):
        build_app({})


def test_production_internal_service_refuses_to_start_without_a_token(production):
    from services.fusion.app import build_app

    with pytest.raises(SettingsError, match="production needs an internal token"):
        build_app({})


def test_ingestion_metrics_bind_loopback_by_default():
    from services.ingestion.config import IngestionSettings
    from services.ingestion.metrics import IngestMetrics

    assert IngestionSettings.model_fields["metrics_address"].default == "127.0.0.1"
    port = IngestMetrics().serve(0)
    (listening,) = [
        c.laddr
        for c in psutil.Process(os.getpid()).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    ]
    assert listening.ip == "127.0.0.1"
