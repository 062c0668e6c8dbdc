"""The retrieval model: image and text towers into one space, and the composed-query fusion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from shared.models.backbone import Backbone
from shared.models.heads import AdditiveAttentionFusion, projection_head
from shared.models.text_backbone_hf import HFTextBackbone
from shared.models.transforms import ImagePreprocessor


@dataclass(frozen=True)
class HeadConfig:
    """Sizes of the trainable parts on top of the backbones."""

    embed_dim: int = 256
    image_hidden_dim: int = 1024
    text_hidden_dim: int = 1024
    fusion_hidden_dim: int = 512
    dropout: float = 0.1
    init_temperature: float = 0.07
    # Features used as they are (normalised): both towers of one CLIP checkpoint, zero-shot.
    identity: bool = False
    # Test-time flips: an image's embedding is the mean of its own and its mirror image's
    # (twice the image encoder's work; training is unchanged).
    test_time_flip: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class ImageTower(nn.Module):
    """Image backbone + projection head: pixels [B, 3, H, W] -> embeddings [B, embed_dim]."""

    def __init__(self, backbone: Backbone, preprocessor: ImagePreprocessor, heads: HeadConfig):
        super().__init__()
        self.backbone = backbone
        self.preprocessor = preprocessor
        self.head = projection_head(
            backbone.feature_dim,
            heads.embed_dim,
            identity=heads.identity,
            hidden_dim=heads.image_hidden_dim,
            dropout=heads.dropout,
        )
        self.test_time_flip = heads.test_time_flip

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embedding = self.head(self.backbone(pixel_values))
        if not self.test_time_flip:
            return embedding
        mirrored = self.head(self.backbone(pixel_values.flip(-1)))
        return F.normalize(embedding + mirrored, dim=-1)


class TextTower(nn.Module):
    """Text backbone + projection head: texts -> embeddings [B, embed_dim]."""

    def __init__(self, backbone: Backbone, heads: HeadConfig):
        super().__init__()
        self.backbone = backbone
        self.head = projection_head(
            backbone.feature_dim,
            heads.embed_dim,
            identity=heads.identity,
            hidden_dim=heads.text_hidden_dim,
            dropout=heads.dropout,
        )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(input_ids=input_ids, attention_mask=attention_mask))

    def encode(self, texts: list[str]) -> torch.Tensor:
        tokens = self.backbone.tokenize(texts)
        return self(tokens["input_ids"], tokens["attention_mask"])


class RetrievalModel(nn.Module):
    """Both towers, the fusion module and the learnable InfoNCE temperature.

    Any tower may be None when only part of a bundle is loaded (the fusion service needs no
    backbone, the text encoder no image tower).
    """

    def __init__(
        self,
        *,
        heads: HeadConfig,
        image: ImageTower | None,
        text: TextTower | None,
        fusion: AdditiveAttentionFusion | None,
    ):
        super().__init__()
        self.heads = heads
        self.image = image
        self.text = text
        self.fusion = fusion
        # CLIP's parameterisation: logits = exp(logit_scale) * cosine, https://arxiv.org/abs/2103.00020
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / heads.init_temperature)))

    @classmethod
    def build(
        cls,
        *,
        heads: HeadConfig,
        image_backbone: Backbone | None,
        preprocessor: ImagePreprocessor | None,
        text_backbone: HFTextBackbone | None,
        with_fusion: bool = True,
    ) -> RetrievalModel:
        image = None
        if image_backbone is not None:
            if preprocessor is None:
                raise ValueError("an image backbone needs the preprocessor its weights expect")
            image = ImageTower(image_backbone, preprocessor, heads)
        text = TextTower(text_backbone, heads) if text_backbone is not None else None
        fusion = (
            AdditiveAttentionFusion(
                heads.embed_dim, hidden_dim=heads.fusion_hidden_dim, dropout=heads.dropout
            )
            if with_fusion
            else None
        )
        return cls(heads=heads, image=image, text=text, fusion=fusion)

    def image_tower(self) -> ImageTower:
        """The image tower. Raises ValueError when the model was loaded without it."""
        if self.image is None:
            raise ValueError("this model was loaded without its image tower")
        return self.image

    def text_tower(self) -> TextTower:
        """The text tower. Raises ValueError when the model was loaded without it."""
        if self.text is None:
            raise ValueError("this model was loaded without its text tower")
        return self.text

    def fusion_module(self) -> AdditiveAttentionFusion:
        """The fusion module. Raises ValueError when the model was loaded without it."""
        if self.fusion is None:
            raise ValueError("this model was loaded without its fusion module")
        return self.fusion

    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale).detach())

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights of everything but the backbones: heads, fusion, temperature."""
        return {k: v for k, v in self.state_dict().items() if ".backbone." not in f".{k}"}
