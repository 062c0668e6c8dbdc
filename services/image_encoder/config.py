"""Settings of the image encoder process (a Ray Serve application): VITRINE_IMAGE_ENCODER_*
variables."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ModelSettings, process_config


class ImageEncoderSettings(ModelSettings):
    model_config = process_config("image-encoder")

    max_images: int = Field(64, ge=1, description="Most images in one request.")
    max_image_bytes: int = Field(10 * 2**20, ge=1024, description="Largest encoded image accepted.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest decoded image (width*height)."
    )
    max_request_pixels: int = Field(
        160_000_000,
        ge=1,
        description="Most pixels (width*height, summed over its images) one request may decode, "
        "read from the headers before any image is decoded: RESOURCE_EXHAUSTED past it. 480 MB "
        "of RGB; a batch of 32 images of 5 MP (the worker's encode_batch) fits.",
    )
