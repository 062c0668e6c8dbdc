"""Settings of the text encoder process (a Ray Serve application): VITRINE_TEXT_ENCODER_*
variables."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ModelSettings, process_config


class TextEncoderSettings(ModelSettings):
    model_config = process_config("text-encoder")

    max_texts: int = Field(256, ge=1, description="Most texts in one request.")
    max_text_chars: int = Field(1000, ge=1, description="Longest text accepted, in characters.")
