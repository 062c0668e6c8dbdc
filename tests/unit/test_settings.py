"""Process settings: typed, read from VITRINE_* variables, a bad value names its variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from operations.settings import PROCESS_SETTINGS
from services.gateway.config import GatewaySettings
from services.ingestion.config import IngestionSettings
from shared.settings import SettingsError, load_settings


def test_defaults_validate_for_every_process(monkeypatch):
    for cls in PROCESS_SETTINGS.values():
        assert load_settings(cls) is not None


def test_environment_variable_sets_a_field(monkeypatch):
    monkeypatch.setenv("VITRINE_GRPC_PORT", "9100")
    assert load_settings(GatewaySettings).grpc_port == 9100


@pytest.mark.parametrize(
    "cls, var, value",
    [
        (GatewaySettings, "VITRINE_GRPC_PORT", "not-a-port"),
        (GatewaySettings, "VITRINE_MAX_TOP_K", "0"),
        (IngestionSettings, "VITRINE_BATCH_SIZE", "-3"),
        (GatewaySettings, "VITRINE_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_value_raises_naming_the_variable(monkeypatch, cls, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=var):
        load_settings(cls)


def test_every_process_uses_the_vitrine_prefix():
    for cls in PROCESS_SETTINGS.values():
        assert all(env.startswith("VITRINE_") for env in cls.env_names().values())


def test_cli_stops_with_a_message_naming_the_variable():
    env = {"VITRINE_METRICS_PORT": "99999", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.app", "config", "ingestion"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "VITRINE_METRICS_PORT='99999'" in proc.stderr
    assert "less than or equal to 65535" in proc.stderr


def test_cli_prints_valid_settings():
    proc = subprocess.run(
        [sys.executable, "-m", "cli.app", "config", "gateway"],
        env={"VITRINE_GRPC_PORT": "9123", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "VITRINE_GRPC_PORT" in proc.stdout and "9123" in proc.stdout


@pytest.mark.parametrize("var", ["VITRINE_MAX_BATCH_SIZE", "VITRINE_BATCH_WAIT_TIMEOUT_S"])
def test_retired_batching_variables_are_refused_naming_the_serve_config(monkeypatch, var):
    """Batching has one home, the Serve config's user_config; a variable that once looked like
    it set it (and did not) is an error, not a silent no-op."""
    from services.text_encoder.config import TextEncoderSettings

    monkeypatch.setenv(var, "4")
    with pytest.raises(SettingsError) as info:
        load_settings(TextEncoderSettings)
    assert var in str(info.value) and "user_config" in str(info.value)


def test_cli_prints_the_batching_in_the_serve_config():
    proc = subprocess.run(
        [sys.executable, "-m", "cli.app", "config", "text-encoder"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "batching (Serve config user_config)" in proc.stdout
    assert "'max_batch_size': 32" in proc.stdout
