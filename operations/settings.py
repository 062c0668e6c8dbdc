"""The platform's processes, the settings class each one reads at start-up, and what is in
force for each (`vitrine config`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import SecretStr

from services.fusion.config import FusionSettings
from services.gateway.config import GatewaySettings
from services.image_encoder.config import ImageEncoderSettings
from services.ingestion.config import IngestionSettings
from services.text_encoder.config import TextEncoderSettings
from services.vector_store.config import VectorStoreSettings
from shared.serving.apps import FUSION, GATEWAY, IMAGE_ENCODER, TEXT_ENCODER, VECTOR_STORE
from shared.settings import RETIRED, VitrineSettings, load_settings
from training.config import TrainingSettings

PROCESS_SETTINGS: dict[str, type[VitrineSettings]] = {
    IMAGE_ENCODER: ImageEncoderSettings,
    TEXT_ENCODER: TextEncoderSettings,
    FUSION: FusionSettings,
    GATEWAY: GatewaySettings,
    VECTOR_STORE: VectorStoreSettings,
    "ingestion": IngestionSettings,
    "train": TrainingSettings,
}


def variables(process: str) -> dict[str, str]:
    """The environment variables a process reads -> the field each one sets."""
    return {env: name for name, env in PROCESS_SETTINGS[process].env_names().items()}


def renamed_variables() -> dict[str, dict[str, str]]:
    """Flat name of before issue 18 -> {process: the variable it reads instead}, over every
    process (the table in README, "Configuration"); RETIRED names have their own message."""
    table: dict[str, dict[str, str]] = {}
    for process, cls in PROCESS_SETTINGS.items():
        for old, new in cls.renamed().items():
            if old not in RETIRED:
                table.setdefault(old, {})[process] = new
    return dict(sorted(table.items()))


@dataclass(frozen=True)
class Setting:
    """One value a process starts with, and where it comes from."""

    name: str  # the environment variable, or the Serve config key
    value: str  # secrets masked
    source: str  # "default", "environment", "Serve config args" or "Serve config user_config"


def _shown(value: object) -> str:
    if isinstance(value, SecretStr):
        return "**********"
    return str(value) if isinstance(value, os.PathLike) else repr(value)


def _serve_app(process: str, serve_config: dict | None) -> dict:
    """The process's entry in the Serve config's applications; {} for a process outside Serve."""
    for app in (serve_config or {}).get("applications", []):
        if app["name"] == process:
            return app
    return {}


def settings_in_force(process: str, *, serve_config: dict | None = None) -> list[Setting]:
    """Each setting `process` starts with in this environment, with `serve_config`'s `args`
    for it (they override the environment) and its deployments' `user_config` (the one home
    of dynamic batching).

    Raises:
        SettingsError: a value is invalid, or a retired or renamed variable is set.
    """
    app = _serve_app(process, serve_config)
    args = app.get("args") or {}
    settings = load_settings(PROCESS_SETTINGS[process], **args)
    present = {name.upper() for name in os.environ}
    rows = []
    for name, env in PROCESS_SETTINGS[process].env_names().items():
        source = "environment" if env in present else "default"
        source = "Serve config args" if name in args else source
        rows.append(Setting(env, _shown(getattr(settings, name)), source))
    for deployment in app.get("deployments", []):
        for key, value in (deployment.get("user_config") or {}).items():
            rows.append(
                Setting(
                    f"{deployment['name']}.user_config.{key}",
                    repr(value),
                    "Serve config user_config",
                )
            )
    return rows
