"""Process settings: typed, one prefix per process (VITRINE_<PROCESS>_*) besides a short list of
shared variables, a bad value or an old flat name refused naming the variable to set, and
`vitrine config` printing what is in force."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from operations.settings import PROCESS_SETTINGS, renamed_variables, settings_in_force
from services.gateway.config import GatewaySettings
from services.image_encoder.config import ImageEncoderSettings
from services.ingestion.config import IngestionSettings
from services.text_encoder.config import TextEncoderSettings
from shared.settings import (
    RETIRED,
    SHARED_VARIABLES,
    SettingsError,
    load_settings,
    process_prefix,
)
from training.config import TrainingSettings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 40


def _vitrine_config(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.app", "config", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def _readers() -> dict[str, list[str]]:
    """Every variable a process reads -> the processes that read it."""
    found: dict[str, list[str]] = {}
    for process, cls in PROCESS_SETTINGS.items():
        for env in cls.env_names().values():
            found.setdefault(env, []).append(process)
    return found


# ---- names -------------------------------------------------------------------------------------


def test_each_process_reads_its_own_prefix_or_a_shared_variable():
    for process, cls in PROCESS_SETTINGS.items():
        prefix = process_prefix(process)
        for env in cls.env_names().values():
            assert env.startswith(prefix) or env in SHARED_VARIABLES, (process, env)


def test_no_two_processes_read_one_variable_unless_it_is_shared():
    shared_by_several = {env for env, procs in _readers().items() if len(procs) > 1}
    assert shared_by_several == set(SHARED_VARIABLES)


def test_no_prefix_is_inside_another():
    """VITRINE_A_ and VITRINE_A_B_ would let one process's variable look like another's."""
    prefixes = [process_prefix(p) for p in PROCESS_SETTINGS]
    for a in prefixes:
        assert not [b for b in prefixes if b != a and b.startswith(a)], a


def test_an_old_name_is_never_a_current_one():
    """Else setting one process's new variable would stop another that refuses it as old."""
    current = set(_readers())
    assert not current & set(renamed_variables())
    assert not current & set(RETIRED)


def test_the_collisions_of_the_flat_namespace_are_gone():
    renamed = renamed_variables()
    assert renamed["VITRINE_MAX_IMAGE_BYTES"] == {
        "image-encoder": "VITRINE_IMAGE_ENCODER_MAX_IMAGE_BYTES",
        "gateway": "VITRINE_GATEWAY_MAX_IMAGE_BYTES",
        "ingestion": "VITRINE_INGESTION_MAX_IMAGE_BYTES",
    }
    gateway, encoder, ingestion = (
        load_settings(cls).max_image_bytes
        for cls in (GatewaySettings, ImageEncoderSettings, IngestionSettings)
    )
    assert (gateway, encoder, ingestion) == (8 * 2**20, 10 * 2**20, 10 * 2**20)


# ---- values ------------------------------------------------------------------------------------


def test_defaults_validate_for_every_process():
    for cls in PROCESS_SETTINGS.values():
        assert load_settings(cls) is not None


def test_a_variable_sets_its_process_only(monkeypatch):
    monkeypatch.setenv("VITRINE_GATEWAY_MAX_IMAGE_BYTES", "4096")
    assert load_settings(GatewaySettings).max_image_bytes == 4096
    assert load_settings(ImageEncoderSettings).max_image_bytes == 10 * 2**20
    assert load_settings(IngestionSettings).max_image_bytes == 10 * 2**20


def test_a_shared_variable_sets_every_process_that_reads_it(monkeypatch, tmp_path):
    monkeypatch.setenv("VITRINE_BUNDLE_PATH", str(tmp_path))
    readers = _readers()["VITRINE_BUNDLE_PATH"]
    assert sorted(readers) == ["fusion", "image-encoder", "text-encoder", "vector-store"]
    for process in readers:
        assert load_settings(PROCESS_SETTINGS[process]).bundle_path == tmp_path


def test_serve_config_args_override_the_environment(monkeypatch):
    monkeypatch.setenv("VITRINE_TEXT_ENCODER_MAX_TEXTS", "7")
    assert load_settings(TextEncoderSettings, max_texts=9).max_texts == 9


@pytest.mark.parametrize(
    "cls, var, value",
    [
        (GatewaySettings, "VITRINE_GATEWAY_GRPC_PORT", "not-a-port"),
        (GatewaySettings, "VITRINE_GATEWAY_MAX_TOP_K", "0"),
        (IngestionSettings, "VITRINE_INGESTION_BATCH_SIZE", "-3"),
        (IngestionSettings, "VITRINE_INGESTION_LOG_LEVEL", "LOUD"),
        (TrainingSettings, "VITRINE_TRAIN_LOG_LEVEL", "LOUD"),
        (GatewaySettings, "VITRINE_ENVIRONMENT", "staging"),
    ],
)
def test_bad_value_raises_naming_the_variable(monkeypatch, cls, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=f"{var}={value!r}"):
        load_settings(cls)


# ---- old names ---------------------------------------------------------------------------------


def test_every_old_name_is_refused_by_each_process_that_read_it_naming_the_new_one(monkeypatch):
    for old, new in renamed_variables().items():
        monkeypatch.setenv(old, "1")
        for process, new_name in new.items():
            with pytest.raises(SettingsError) as info:
                load_settings(PROCESS_SETTINGS[process])
            assert f"{old} is now {new_name}" in str(info.value)
        monkeypatch.delenv(old)


def test_an_old_name_is_refused_even_when_the_new_one_is_set(monkeypatch):
    """Both set: the old one would silently stop mattering; say so instead."""
    monkeypatch.setenv("VITRINE_GATEWAY_GRPC_PORT", "9100")
    monkeypatch.setenv("VITRINE_GRPC_PORT", "9100")
    with pytest.raises(SettingsError, match="VITRINE_GRPC_PORT is now VITRINE_GATEWAY_GRPC_PORT"):
        load_settings(GatewaySettings)


def test_the_log_level_names_where_each_process_reads_it_now(monkeypatch):
    monkeypatch.setenv("VITRINE_LOG_LEVEL", "DEBUG")
    for cls in PROCESS_SETTINGS.values():
        with pytest.raises(SettingsError) as info:
            load_settings(cls)
        message = str(info.value)
        assert "VITRINE_INGESTION_LOG_LEVEL" in message and "VITRINE_TRAIN_LOG_LEVEL" in message
        assert "logging_config" in message
    assert set(_readers()) >= {"VITRINE_INGESTION_LOG_LEVEL", "VITRINE_TRAIN_LOG_LEVEL"}


@pytest.mark.parametrize("var", ["VITRINE_MAX_BATCH_SIZE", "VITRINE_BATCH_WAIT_TIMEOUT_S"])
def test_retired_batching_variables_are_refused_naming_the_serve_config(monkeypatch, var):
    """Batching has one home, the Serve config's user_config; a variable that once looked like
    it set it (and did not) is an error, not a silent no-op."""
    monkeypatch.setenv(var, "4")
    with pytest.raises(SettingsError) as info:
        load_settings(TextEncoderSettings)
    assert var in str(info.value) and "user_config" in str(info.value)


def test_cli_stops_on_an_old_name_naming_the_new_one():
    proc = _vitrine_config("ingestion", VITRINE_METRICS_PORT="9102")
    assert proc.returncode == 2
    assert "VITRINE_METRICS_PORT is now VITRINE_INGESTION_METRICS_PORT" in proc.stderr


# ---- vitrine config ----------------------------------------------------------------------------


def test_cli_stops_with_a_message_naming_the_variable():
    proc = _vitrine_config("ingestion", VITRINE_INGESTION_METRICS_PORT="99999")
    assert proc.returncode == 2
    assert "VITRINE_INGESTION_METRICS_PORT='99999'" in proc.stderr
    assert "less than or equal to 65535" in proc.stderr


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """`vitrine config` lines: name -> (source, value)."""
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("  "):
            name, source, value = re.split(r"\s{2,}", line.strip(), maxsplit=2)
            rows[name] = (source, value)
    return rows


def test_cli_prints_each_variable_with_its_source_and_value():
    key = "shop:" + "k" * 24
    proc = _vitrine_config(
        "gateway",
        VITRINE_GATEWAY_GRPC_PORT="9123",
        VITRINE_GATEWAY_API_KEYS=key,
        VITRINE_INTERNAL_TOKEN=TOKEN,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("[gateway] GatewaySettings\n")
    rows = _rows(proc.stdout)
    assert set(rows) == set(GatewaySettings.env_names().values())
    assert rows["VITRINE_GATEWAY_GRPC_PORT"] == ("environment", "9123")
    assert rows["VITRINE_GATEWAY_HTTP_PORT"] == ("default", "8000")
    assert rows["VITRINE_GATEWAY_API_KEYS"] == ("environment", "**********")
    assert rows["VITRINE_INTERNAL_TOKEN"] == ("environment", "**********")
    assert "k" * 24 not in proc.stdout and TOKEN not in proc.stdout


def test_cli_prints_every_process_and_the_batching_in_the_serve_config():
    proc = _vitrine_config()
    assert proc.returncode == 0, proc.stderr
    headers = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert [h.split()[0].strip("[]") for h in headers] == list(PROCESS_SETTINGS)
    rows = _rows(proc.stdout)
    assert rows["TextEncoder.user_config.max_batch_size"] == ("Serve config user_config", "32")
    assert rows["VITRINE_TRAIN_CACHE_DIR"] == ("default", "artifacts/cache")


def test_serve_config_args_are_shown_as_their_source():
    config = {
        "applications": [
            {
                "name": "fusion",
                "args": {"max_rows": 12},
                "deployments": [{"name": "Fusion", "user_config": {"max_batch_size": 8}}],
            }
        ]
    }
    rows = {row.name: row for row in settings_in_force("fusion", serve_config=config)}
    assert (rows["VITRINE_FUSION_MAX_ROWS"].source, rows["VITRINE_FUSION_MAX_ROWS"].value) == (
        "Serve config args",
        "12",
    )
    assert rows["Fusion.user_config.max_batch_size"].value == "8"


# ---- what the docs and launchers say -----------------------------------------------------------


def test_readme_lists_every_renamed_variable():
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    for old, new in renamed_variables().items():
        row = f"| `{old}` | " + ", ".join(f"`{name}`" for name in new.values()) + " |"
        assert row in section, f"README's Configuration table lacks: {row}"


def _documents() -> dict[str, str]:
    texts = {"README.md": (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[0]}
    paths = [*ROOT.glob("docs/*.md"), *ROOT.glob("services/*/README.md"), ROOT / "Makefile"]
    paths += [ROOT / "scripts" / "run.sh", *ROOT.glob("deploy/**/*.yaml")]
    texts.update({str(p.relative_to(ROOT)): p.read_text() for p in paths})
    return texts


def test_docs_and_launchers_use_no_old_name():
    """Outside README's table of old names, an old name is a stale instruction."""
    old = set(renamed_variables())
    for path, text in _documents().items():
        stale = sorted(set(re.findall(r"\bVITRINE_[A-Z0-9_]*[A-Z0-9]\b", text)) & old)
        assert not stale, f"{path} names old variables {stale}"
