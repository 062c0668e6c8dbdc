"""The platform's processes and the settings class each one reads at start-up."""

from __future__ import annotations

from services.fusion.config import FusionSettings
from services.gateway.config import GatewaySettings
from services.image_encoder.config import ImageEncoderSettings
from services.ingestion.config import IngestionSettings
from services.text_encoder.config import TextEncoderSettings
from services.vector_store.config import VectorStoreSettings
from shared.settings import VitrineSettings
from training.config import TrainingSettings

PROCESS_SETTINGS: dict[str, type[VitrineSettings]] = {
    "image-encoder": ImageEncoderSettings,
    "text-encoder": TextEncoderSettings,
    "fusion": FusionSettings,
    "gateway": GatewaySettings,
    "vector-store": VectorStoreSettings,
    "ingestion": IngestionSettings,
    "train": TrainingSettings,
}
