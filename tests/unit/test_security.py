"""API keys, TLS settings, and secrets kept out of messages and out of what Serve stores."""

from __future__ import annotations

import pickle

import grpc
import pytest

from services.gateway.security import ApiKeys, PermissionDeniedError, TLSFiles
from shared.serving.auth import UnauthenticatedError
from shared.settings import SettingsError, load_settings

KEY = "k" * 20
OTHER = "o" * 20


def test_parse_and_authorize_by_header_and_scope():
    keys = ApiKeys.parse(f"shop:{KEY}:search\n# comment\n, ops:{OTHER}", source="test")
    assert keys.enabled and keys.names == ["ops", "shop"]
    assert keys.authorize([("authorization", f"Bearer {KEY}")], "search").name == "shop"
    assert keys.authorize([("X-Api-Key", OTHER.encode())], "info").name == "ops"  # bytes, any case
    assert keys.authorize([("x-api-key", OTHER)], None).scopes == {"search", "info"}
    with pytest.raises(PermissionDeniedError, match="'shop' lacks the scope 'info'") as info:
        keys.authorize([("x-api-key", KEY)], "info")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED
    for headers in ([], [("authorization", f"Basic {KEY}")], [("x-api-key", " ")]):
        with pytest.raises(UnauthenticatedError, match="missing credentials"):
            keys.authorize(headers, "search")
    with pytest.raises(UnauthenticatedError, match="invalid API key") as info:
        keys.authorize([("x-api-key", "z" * 20)], "search")
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert KEY not in repr(keys)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"nameonly{KEY}", "entry 1 is not NAME:KEY"),
        (f"a:{KEY}:search+admin", "unknown scopes ['admin']"),
        ("a:short", "shorter than 16"),
        (f"a:{KEY},b:{KEY}", "entry 2 (b) repeats"),
        (f":{KEY}", "entry 1 is not"),
    ],
)
def test_bad_entries_name_the_entry_never_the_key(text, words):
    with pytest.raises(ValueError, match=r"^src: ") as info:
        ApiKeys.parse(text, source="src")
    assert words in str(info.value)
    assert KEY not in str(info.value) and "short" not in str(info.value).replace("shorter", "")


def test_empty_means_authentication_off_and_files_merge(tmp_path):
    assert not ApiKeys.parse("", source="x").enabled
    path = tmp_path / "keys"
    path.write_text(f"ops:{OTHER}:info\n")
    keys = ApiKeys.load(env_text=f"shop:{KEY}", file=str(path))
    assert keys.names == ["ops", "shop"]
    with pytest.raises(ValueError, match="API key file .*missing"):
        ApiKeys.load(env_text=None, file=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="configured twice"):
        keys.merged(ApiKeys.parse(f"again:{KEY}", source="x"))


def test_tls_files_must_be_complete():
    TLSFiles().check()
    TLSFiles("c.pem", "k.pem", "ca.pem").check()
    with pytest.raises(ValueError, match="both"):
        TLSFiles("c.pem").check()
    with pytest.raises(ValueError, match="needs TLS"):
        TLSFiles(client_ca_file="ca.pem").check()
    with pytest.raises(ValueError, match="TLS file /nonexistent/.*No such file"):
        TLSFiles("/nonexistent/c.pem", "/nonexistent/k.pem").server_credentials()


def test_secret_settings_are_never_echoed(monkeypatch):
    from services.gateway.config import GatewaySettings
    from services.vector_store.config import VectorStoreSettings

    monkeypatch.setenv("VITRINE_VECTOR_STORE_QDRANT_API_KEY", KEY)
    s = load_settings(VectorStoreSettings)
    assert s.qdrant_api_key.get_secret_value() == KEY
    assert KEY not in repr(s) and KEY not in str(s.model_dump())
    with pytest.raises(SettingsError) as info:
        load_settings(GatewaySettings, api_keys=123, max_top_k=0)  # not a string, bad limit
    message = str(info.value)
    assert "VITRINE_GATEWAY_API_KEYS:" in message and "123" not in message
    assert "VITRINE_GATEWAY_MAX_TOP_K=0" in message  # other values are still shown


def test_the_gateway_app_ships_key_digests_not_keys(monkeypatch, tmp_path):
    """What Serve stores and sends to replicas (the bound arguments) holds no key."""
    from services.gateway.app import build_app

    monkeypatch.setenv("VITRINE_GATEWAY_API_KEYS", f"shop:{KEY}:search")
    app = build_app({"api_keys_file": str(tmp_path / "mounted-keys")})
    kwargs = app._bound_deployment.init_kwargs
    assert kwargs["api_keys"].names == ["shop"]
    assert kwargs["api_keys_file"] == str(tmp_path / "mounted-keys")
    assert KEY.encode() not in pickle.dumps(kwargs)
    monkeypatch.setenv("VITRINE_GATEWAY_API_KEYS", "shop:short")
    with pytest.raises(SettingsError, match="shorter than 16"):
        build_app({})
    with pytest.raises(SettingsError, match="needs TLS"):
        build_app({"tls_client_ca_file": "ca.pem", "api_keys": None})


def test_a_key_with_a_rate_is_refused_past_it_with_the_time_to_wait():
    from services.gateway.ratelimit import RateLimitedError, RateLimiter, parse_rate

    assert parse_rate("50/s") == 50 and parse_rate("600/min") == 10 and parse_rate("1.5/s") == 1.5
    for bad in ("50", "0/s", "5/h", "-1/s"):
        with pytest.raises(ValueError):
            parse_rate(bad)
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    for _ in range(2):  # a burst of one second's worth
        limiter.take("shop", 2.0)
    with pytest.raises(RateLimitedError, match="over its rate of 2 requests/s") as info:
        limiter.take("shop", 2.0)
    assert info.value.retry_after_s == pytest.approx(0.5)
    assert info.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    limiter.take("other", 2.0)  # buckets are per key
    now[0] = 0.5
    limiter.take("shop", 2.0)
    keys = ApiKeys.parse(f"shop:{KEY}:search:rate=1/min,ops:{OTHER}", source="t")
    keys.authorize([("x-api-key", KEY)], "search")
    with pytest.raises(RateLimitedError):
        keys.authorize([("x-api-key", KEY)], "search")
    for _ in range(5):
        keys.authorize([("x-api-key", OTHER)], "search")  # no rate: no limit
    with pytest.raises(ValueError, match=r"entry 1 \(shop\): rate .9/h."):
        ApiKeys.parse(f"shop:{KEY}:search:rate=9/h", source="t")
