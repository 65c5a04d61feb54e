"""Safe image decoding and the tensor transform used for every RGB input."""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Refuse decompression bombs early: a 20000x20000 image is downscaled while decoding (draft) or refused.
MAX_PIXELS = 80_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BadImageError(ValueError):
    """An image could not be decoded; the message is '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (L, LA, P, RGBA, CMYK, I;16, I, F) to 8-bit RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 / max(float(array.max()), 1.0) if image.mode != "F" or array.max() > 1 else 255.0
        if image.mode.startswith("I;16"):
            scale = 255.0 / 65535.0
        image = Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_rgb(path: str | Path, max_side: int | None = None) -> Image.Image:
    """Decode an image file to RGB with EXIF orientation applied.

    Raises BadImageError naming the path for missing, empty, truncated or undecodable files and for
    images larger than MAX_PIXELS (unless `max_side` allows a reduced decode of JPEGs).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise BadImageError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max_side is not None and image.format == "JPEG":
                    image.draft("RGB", (max_side, max_side))
                if image.width * image.height > MAX_PIXELS:
                    raise BadImageError(path, f"image is {image.width}x{image.height} pixels, "
                                              f"above the limit of {MAX_PIXELS}")
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise BadImageError(path, f"cannot decode image ({type(error).__name__}: {error})") from error


def image_transform(image_size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> Callable[[Image.Image], torch.Tensor]:
    """Return PIL RGB -> float32 [3, H, W]: bilinear resize to `image_size` (H, W), /255, normalise."""
    height, width = int(image_size[0]), int(image_size[1])
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def transform(image: Image.Image) -> torch.Tensor:
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
        return (tensor - mean_t) / std_t

    return transform
