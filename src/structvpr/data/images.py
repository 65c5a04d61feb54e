"""Safe image decoding and the tensor transform used for every RGB input."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# Refuse decompression bombs early: images above this many pixels are refused before decoding,
# except JPEGs that a `max_side` lets libjpeg decode at a reduced scale (draft) below the limit.
MAX_PIXELS = 80_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BadImageError(ValueError):
    """An image could not be decoded; the message is '<path>: <reason>'."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{_printable(path)}: {reason}")
        self.path = Path(path)
        self.reason = reason


def _printable(path: str | Path) -> str:
    """The path as printable text even when its name holds bytes that are not UTF-8."""
    return str(path).encode("utf-8", errors="surrogateescape").decode("utf-8", errors="backslashreplace")


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit (I;16*), 32-bit integer (I) and float (F) single-channel images -> 8-bit L."""
    array = np.asarray(image, dtype=np.float64)
    peak = float(array.max()) if array.size else 0.0
    if image.mode.startswith("I;16") or (image.mode == "I" and 255 < peak <= 65535):
        array = array / 257.0  # full 16-bit range -> 0..255, the usual meaning of a 16-bit PNG
    elif image.mode == "F" and peak <= 1.0:
        array = array * 255.0  # float images in [0, 1]
    elif peak > 255:
        array = array * (255.0 / peak)
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode (1, L, LA, P, PA, RGBA, CMYK, YCbCr, I;16, I, F) to 8-bit RGB.

    Transparent pixels are composited on black, the colour padding gets in VPR pipelines.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit_gray(image)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


def load_rgb(path: str | Path, max_side: int | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode an image file to 8-bit RGB with EXIF orientation applied.

    `max_side` (pixels) bounds the longer side of the result: JPEGs are decoded at a reduced scale
    (cheap, little memory), other formats are resized after decoding. Raises BadImageError naming
    the path for missing, empty, truncated or undecodable files and for images above `max_pixels`
    (counted at the scale they would be decoded at).
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
                if image.width * image.height > max_pixels:
                    raise BadImageError(
                        path, f"image is {image.width}x{image.height} pixels, above the limit of {max_pixels}"
                    )
                image.load()
                rgb = _to_rgb(ImageOps.exif_transpose(image))
    except BadImageError:
        raise
    except (
        OSError,
        SyntaxError,
        ValueError,
        TypeError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise BadImageError(path, f"cannot decode image ({type(error).__name__}: {error})") from error
    if max_side is not None and max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return rgb


def find_bad_images(paths: Iterable[str | Path], max_side: int = 256) -> list[BadImageError]:
    """Fully decode every image (JPEGs at reduced scale) and return the errors of those that fail.

    Used by the `on_bad_image='skip'` policies; costs one decode per image.
    """
    errors = []
    for path in paths:
        try:
            load_rgb(path, max_side=max_side)
        except BadImageError as error:
            errors.append(error)
    return errors


def image_transform(
    image_size: Sequence[int], mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Callable[[Image.Image], torch.Tensor]:
    """Return PIL RGB -> float32 [3, H, W]: bilinear resize to `image_size` (H, W), /255, normalise."""
    height, width = int(image_size[0]), int(image_size[1])
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def transform(image: Image.Image) -> torch.Tensor:
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        array = np.asarray(image, dtype=np.float32) / 255.0
        tensor = torch.from_numpy(array.copy()).permute(2, 0, 1)
        return (tensor - mean_t) / std_t

    return transform
