"""Image decoding and preprocessing, without torchvision.

Decoding guards against oversized and decompression-bomb images, and a request's images against
a pixel budget read from their headers; preprocessing resizes the shorter side, centre-crops to a
square of `resolution` pixels, and normalises per channel.

torch is imported where a tensor is made, not here: the gateway checks images with this module
and never loads torch.
"""

from __future__ import annotations

import base64
import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept (undecodable, too large, or a decompression bomb)."""


class PixelBudgetError(ImageDecodeError):
    """A request's images hold more pixels together than one request may decode."""


def decode_image(
    data: bytes, *, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000
) -> Image.Image:
    """Decodes encoded image bytes into an RGB PIL image.

    Args:
        data: encoded image (JPEG, PNG, WebP, GIF, BMP, ...).
        max_bytes: largest encoded size accepted.
        max_pixels: largest width x height accepted, checked before pixels are decoded.

    Raises:
        ImageDecodeError: with a message saying what is wrong.
    """
    with _guarded():
        img = _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
        img.draft("RGB", img.size)
        img.load()
    return to_rgb(img)


def probe_image(
    data: bytes, *, max_bytes: int = 10 * 2**20, max_pixels: int = 40_000_000
) -> tuple[str, int, int]:
    """(format, width, height) from the image's header, without decoding its pixels: the cheap
    check of `decode_image`'s limits (a truncated body is only found by decoding).

    Raises:
        ImageDecodeError: not an image, or over a limit.
    """
    with _guarded():
        img = _open_checked(data, max_bytes=max_bytes, max_pixels=max_pixels)
        return str(img.format), *img.size


def request_pixels(images: Sequence[bytes], *, budget: int, max_bytes: int) -> int:
    """The pixels (width x height, summed) that `images` would decode to, read from their
    headers (`probe_image`) before any of them is decoded.

    A request of many images, each under the per-image limit, would otherwise decode them all
    (3 bytes a pixel: 64 images of 40 MP are 7.7 GB) before any limit applies.

    Raises:
        PixelBudgetError: the sum is over `budget`.
        ImageDecodeError: an image's header is unreadable or it breaks `max_bytes` (or PIL's
            decompression-bomb check); the message names the image by its index.
    """
    total = 0
    for i, data in enumerate(images):
        try:
            _, width, height = probe_image(data, max_bytes=max_bytes, max_pixels=2**62)
        except ImageDecodeError as e:
            raise ImageDecodeError(f"image {i}: {e}") from None
        total += width * height
    if total > budget:
        raise PixelBudgetError(
            f"{len(images)} image(s) hold {total:,} pixels, more than the {budget:,} one "
            "request may decode"
        )
    return total


def thumbnail_data_uri(data: bytes, *, px: int, quality: int = 80) -> str:
    """A `data:image/jpeg;base64,...` URI of the image shrunk to fit px x px (a few KB), for a
    result list to show without fetching the original.

    JPEGs are decoded at reduced scale (PIL's draft mode), so a large photo costs a few
    milliseconds.

    Raises:
        ImageDecodeError: the bytes are not a decodable image.
    """
    with _guarded():
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (px, px))
        rgb = to_rgb(img)
        rgb.thumbnail((px, px), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _open_checked(data: bytes, *, max_bytes: int, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageDecodeError("empty image")
    if len(data) > max_bytes:
        raise ImageDecodeError(f"image is {len(data)} bytes, more than the limit of {max_bytes}")
    img = Image.open(io.BytesIO(data))
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image is {width}x{height} pixels, more than the limit of {max_pixels}"
        )
    return img


@contextlib.contextmanager
def _guarded():
    """Turns PIL's many exception types (and bomb warnings) into ImageDecodeError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from None
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise ImageDecodeError(f"cannot decode image: {exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Converts any mode (P, LA, RGBA, CMYK, I;16, 1, ...) to RGB, compositing alpha on white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        span = float(arr.max() - arr.min()) or 1.0
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
    return img.convert("RGB")


@dataclass(frozen=True)
class ImagePreprocessor:
    """PIL image -> normalised float tensor [3, resolution, resolution].

    `scale`/`offset` first map 0..255 pixels linearly (default: to 0..1), then mean/std
    normalise; EfficientNet-Lite uses (p - 127) / 128, i.e. scale=1/128, offset=-127/128,
    mean 0 and std 1.
    """

    resolution: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scale: float = 1 / 255
    offset: float = 0.0
    resize: str = "bicubic"

    def to_dict(self) -> dict:
        return {
            "resolution": self.resolution,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "offset": self.offset,
            "resize": self.resize,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ImagePreprocessor:
        return cls(
            resolution=int(d["resolution"]),
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            scale=float(d["scale"]),
            offset=float(d["offset"]),
            resize=str(d["resize"]),
        )

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """Resizes the shorter side to `resolution` and centre-crops a square."""
        w, h = img.size
        s = self.resolution / min(w, h)
        nw, nh = max(self.resolution, round(w * s)), max(self.resolution, round(h * s))
        img = img.resize((nw, nh), _RESAMPLE[self.resize])
        left, top = (nw - self.resolution) // 2, (nh - self.resolution) // 2
        return img.crop((left, top, left + self.resolution, top + self.resolution))

    def __call__(self, img: Image.Image) -> torch.Tensor:
        import torch

        arr: np.ndarray = np.asarray(self.resize_crop(to_rgb(img)), dtype=np.float32)  # [H, W, 3]
        arr = arr * self.scale + self.offset
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())  # [3, H, W]

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """Stacks preprocessed images: [batch, 3, resolution, resolution]."""
        import torch

        return torch.stack([self(img) for img in images])
