"""Typed process settings: one `VitrineSettings` subclass per process, read once in `main()`.

Every field is read from an environment variable `VITRINE_<FIELD>` (upper case). A bad value
stops the process at start-up with a message naming the variable, via `load_settings_or_exit`.
Library code never reads the environment: it receives plain values from the process's main.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "VITRINE_"

# A field whose name holds one of these is a secret: its value is never echoed in an error.
SECRET_WORDS = ("key", "secret", "token", "password")

_BATCHING = (
    "dynamic batching is set in one place, the `user_config` of each deployment in the Serve "
    "config (deploy/serve/vitrine.yaml); `vitrine serve status` shows what each replica runs with"
)
# Variables that no longer set anything: naming one is an error that says where the knob went.
RETIRED = {"VITRINE_MAX_BATCH_SIZE": _BATCHING, "VITRINE_BATCH_WAIT_TIMEOUT_S": _BATCHING}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class VitrineSettings(BaseSettings):
    """Base of every process's settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True)

    log_level: LogLevel = "INFO"

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Maps each field to the environment variable that sets it."""
        return {name: env_var(name) for name in cls.model_fields}


Environment = Literal["development", "production"]


class InternalCallSettings(VitrineSettings):
    """The variables shared, on purpose, by every process that serves or makes internal gRPC
    calls (the encoders, fusion, the vector store, the gateway, the ingestion worker, the CLI):
    VITRINE_ENVIRONMENT, VITRINE_INTERNAL_TOKEN, VITRINE_INTERNAL_TOKEN_FILE."""

    environment: Environment = Field(
        "development",
        description="production: the gateway refuses to start without API keys (unless "
        "VITRINE_ALLOW_UNAUTHENTICATED) and every service without an internal token.",
    )
    internal_token: SecretStr | None = Field(
        None,
        description="The internal services' shared secret (at least 32 characters), sent by "
        "every internal caller; without it they refuse every gRPC call. A secret: from the "
        "environment or a Kubernetes Secret only.",
    )
    internal_token_file: str | None = Field(
        None, description="A file holding the internal token (`make run` writes one, mode 0600)."
    )


S = TypeVar("S", bound=VitrineSettings)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


def env_var(field_name: str) -> str:
    return f"{ENV_PREFIX}{field_name.upper()}"


def describe_error(exc: ValidationError) -> str:
    """Formats a ValidationError as one line per bad variable."""
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        value = err.get("input")
        secret = any(word in field for word in SECRET_WORDS)
        shown = "" if isinstance(value, dict) or secret else f"={value!r}"
        lines.append(f"  {env_var(field)}{shown}: {err['msg']}")
    return "\n".join(lines)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Reads and validates `cls` from the environment (and explicit overrides).

    Raises:
        SettingsError: a value is invalid; the message names each offending variable.
    """
    retired = [f"  {name}: {why}" for name, why in RETIRED.items() if name in os.environ]
    if retired:
        raise SettingsError("retired variables are set:\n" + "\n".join(retired))
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid {cls.__name__}:\n{describe_error(exc)}") from None


def load_settings_or_exit(cls: type[S], **overrides: object) -> S:
    """Like `load_settings`, but prints the problem and exits with status 2: for `main()`s."""
    try:
        return load_settings(cls, **overrides)
    except SettingsError as exc:
        print(f"vitrine: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
