"""Typed process settings: one `VitrineSettings` subclass per process, read once in `main()`.

Each process reads its own variables, `VITRINE_<PROCESS>_<FIELD>` (its class sets
`model_config = process_config("gateway")`), so that on one Ray cluster a variable changes one
process. The few variables every process must agree on keep the bare prefix: SHARED_VARIABLES.
A bad value, or a variable under its flat name of before issue 18 (`VITRINE_<FIELD>`, now
renamed), stops the process at start-up with a message naming the variable, via
`load_settings_or_exit`. Library code never reads the environment: it receives plain values
from the process's main.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic.json_schema import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.observability.tracing import TracingConfig

ENV_PREFIX = "VITRINE_"

# Read by several processes on purpose, under these names: they must agree across a cluster.
SHARED_VARIABLES = (
    "VITRINE_ENVIRONMENT",
    "VITRINE_INTERNAL_TOKEN",
    "VITRINE_INTERNAL_TOKEN_FILE",
    "VITRINE_BUNDLE_PATH",
    "VITRINE_TRACING_EXPORTER",
    "VITRINE_TRACING_ENDPOINT",
    "VITRINE_TRACING_SAMPLE_RATIO",
)

# A field whose name holds one of these is a secret: its value is never echoed in an error.
SECRET_WORDS = ("key", "secret", "token", "password")

_BATCHING = (
    "dynamic batching is set in one place, the `user_config` of each deployment in the Serve "
    "config (deploy/serve/vitrine.yaml); `vitrine serve status` shows what each replica runs with"
)
_SERVE_LOG_LEVEL = (
    "the Serve applications log at the Serve config's logging_config.log_level "
    "(deploy/serve/vitrine.yaml); the ingestion worker and training read "
    "VITRINE_INGESTION_LOG_LEVEL and VITRINE_TRAIN_LOG_LEVEL"
)
# Variables that no longer set anything under this name: naming one is an error that says where
# the knob went.
RETIRED = {
    "VITRINE_MAX_BATCH_SIZE": _BATCHING,
    "VITRINE_BATCH_WAIT_TIMEOUT_S": _BATCHING,
    "VITRINE_LOG_LEVEL": _SERVE_LOG_LEVEL,
}

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def process_prefix(process: str) -> str:
    """The prefix of a process's own variables: "image-encoder" -> "VITRINE_IMAGE_ENCODER_"."""
    return f"{ENV_PREFIX}{process.upper().replace('-', '_')}_"


def process_config(process: str) -> SettingsConfigDict:
    """The `model_config` of a process's settings class: it reads VITRINE_<PROCESS>_<FIELD>."""
    return SettingsConfigDict(env_prefix=process_prefix(process))


class VitrineSettings(BaseSettings):
    """Base of every process's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, case_sensitive=False, frozen=True, validate_by_name=True
    )

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Maps each field to the environment variable that sets it."""
        prefix = cls.model_config.get("env_prefix", ENV_PREFIX)
        names = {}
        for name, info in cls.model_fields.items():
            shared = info.validation_alias  # the shared variable's name, for a shared field
            names[name] = shared if isinstance(shared, str) else prefix + name.upper()
        return names

    @classmethod
    def renamed(cls) -> dict[str, str]:
        """Flat name of before issue 18 (`VITRINE_<FIELD>`) -> the variable that replaced it,
        for each field not on the shared list."""
        flat = {name: ENV_PREFIX + name.upper() for name in cls.model_fields}
        return {
            flat[name]: env
            for name, env in cls.env_names().items()
            if env != flat[name] and not _added_since_prefixes(cls.model_fields[name])
        }


# Marks a field added after the per-process prefixes (it never had a flat name to rename):
# Field(..., json_schema_extra=SINCE_PREFIXES).
SINCE_PREFIXES: JsonDict = {"since_prefixes": True}


def _added_since_prefixes(info) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("since_prefixes"))


Environment = Literal["development", "production"]


class InternalCallSettings(VitrineSettings):
    """The variables shared, on purpose, by every process that serves or makes internal gRPC
    calls (the encoders, fusion, the vector store, the gateway, the ingestion worker, the CLI):
    VITRINE_ENVIRONMENT, VITRINE_INTERNAL_TOKEN, VITRINE_INTERNAL_TOKEN_FILE."""

    environment: Environment = Field(
        "development",
        validation_alias="VITRINE_ENVIRONMENT",
        description="production: the gateway refuses to start without API keys (unless "
        "VITRINE_GATEWAY_ALLOW_UNAUTHENTICATED) and every service without an internal token.",
    )
    internal_token: SecretStr | None = Field(
        None,
        validation_alias="VITRINE_INTERNAL_TOKEN",
        description="The internal services' shared secret (at least 32 characters), sent by "
        "every internal caller; without it they refuse every gRPC call. A secret: from the "
        "environment or a Kubernetes Secret only.",
    )
    internal_token_file: str | None = Field(
        None,
        validation_alias="VITRINE_INTERNAL_TOKEN_FILE",
        description="A file holding the internal token (`make run` writes one, mode 0600).",
    )
    tracing_exporter: str = Field(
        "",
        validation_alias="VITRINE_TRACING_EXPORTER",
        pattern=r"^(|otlp|file:.+)$",
        description="Where every process sends its OpenTelemetry spans: '' (off, the "
        "default), 'otlp' (an OTLP/gRPC collector at VITRINE_TRACING_ENDPOINT) or "
        "'file:DIRECTORY' (JSON lines, one file per process).",
        json_schema_extra=SINCE_PREFIXES,
    )
    tracing_endpoint: str = Field(
        "http://127.0.0.1:4317",
        validation_alias="VITRINE_TRACING_ENDPOINT",
        description="The OTLP/gRPC collector's address (http:// for plaintext).",
        json_schema_extra=SINCE_PREFIXES,
    )
    tracing_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        validation_alias="VITRINE_TRACING_SAMPLE_RATIO",
        description="Share of new traces kept (a request carrying a sampled traceparent is "
        "always traced); 0 traces only those.",
        json_schema_extra=SINCE_PREFIXES,
    )

    def tracing(self) -> TracingConfig:
        """The tracing of this process (shared.observability.tracing)."""
        return TracingConfig(
            self.tracing_exporter, self.tracing_endpoint, self.tracing_sample_ratio
        )


class BundleSettings(InternalCallSettings):
    """The processes that load the slot's model bundle (the encoders, fusion, the vector store):
    one bundle for all of them, VITRINE_BUNDLE_PATH, since the collection holds the vectors its
    image tower made and the query towers must match them."""

    bundle_path: Path | None = Field(
        None,
        validation_alias="VITRINE_BUNDLE_PATH",
        description="The model bundle directory of the slot; None = artifacts/bundles/default "
        "(shared.serving.runtime.resolve_bundle).",
    )


class ModelSettings(BundleSettings):
    """The processes that run a model of the bundle (the encoders and fusion): where and how."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the model runs.")
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="Inference runtime; auto = the graphs the bundle was exported for on a CPU "
        "(onnxruntime when it has them), else torch.",
    )
    torch_threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Torch intra-op threads per replica; 0 = its CPU budget "
        "(ray_actor_options.num_cpus rounded, at least 1).",
    )


S = TypeVar("S", bound=VitrineSettings)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


def describe_error(exc: ValidationError, cls: type[VitrineSettings]) -> str:
    """Formats a ValidationError of `cls` as one line per bad variable."""
    names = cls.env_names()
    lines = []
    for err in exc.errors():
        where = str(err["loc"][0]) if err["loc"] else "?"
        variable = names.get(where, where)  # a field's name, or the shared variable's
        value = err.get("input")
        secret = any(word in where.lower() for word in SECRET_WORDS)
        shown = "" if isinstance(value, dict) or secret else f"={value!r}"
        lines.append(f"  {variable}{shown}: {err['msg']}")
    return "\n".join(lines)


def stale_variables(cls: type[VitrineSettings], environ: Iterable[str]) -> list[str]:
    """A line for each variable in `environ` that no longer sets anything, or that `cls` now
    reads under another name."""
    present = {name.upper() for name in environ}
    lines = [f"  {name}: {why}" for name, why in RETIRED.items() if name in present]
    lines += [
        f"  {old} is now {new} (one prefix per process: README, Configuration)"
        for old, new in cls.renamed().items()
        if old in present and old not in RETIRED
    ]
    return lines


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Reads and validates `cls` from the environment (and explicit overrides).

    Raises:
        SettingsError: a value is invalid, or a retired or renamed variable is set; the
            message names each offending variable.
    """
    stale = stale_variables(cls, os.environ)
    if stale:
        raise SettingsError("retired or renamed variables are set:\n" + "\n".join(stale))
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(f"invalid {cls.__name__}:\n{describe_error(exc, cls)}") from None


def load_settings_or_exit(cls: type[S], **overrides: Any) -> S:
    """Like `load_settings`, but prints the problem and exits with status 2: for `main()`s."""
    try:
        return load_settings(cls, **overrides)
    except SettingsError as exc:
        print(f"vitrine: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
