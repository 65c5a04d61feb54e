"""load_rgb on every kind of awkward image file, each written for real in the test."""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from structvpr.data.images import (
    BadImageError,
    find_bad_images,
    image_transform,
    load_rgb,
)
from structvpr.data.layouts import open_dataset, skipped_summary
from structvpr.data.place_dataset import DatasetError


def jpeg(path: Path, size: tuple[int, int] = (32, 24), colour=(200, 30, 30), **save) -> Path:
    Image.new("RGB", size, colour).save(path, quality=95, **save)
    return path


def test_truncated_jpeg(tmp_path: Path) -> None:
    whole = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(whole).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match=r"cut.jpg: cannot decode image \(OSError: image file is truncated"):
        load_rgb(tmp_path / "cut.jpg")


def test_corrupt_bytes_and_non_image(tmp_path: Path) -> None:
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(1).bytes(500))
    (tmp_path / "text.png").write_text("this is not a picture")
    for name in ("noise.jpg", "text.png"):
        with pytest.raises(BadImageError, match=rf"{name}: cannot decode image"):
            load_rgb(tmp_path / name)


def test_zero_byte_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match=r"empty.jpg: file is empty \(0 bytes\)"):
        load_rgb(tmp_path / "empty.jpg")
    with pytest.raises(BadImageError, match=r"gone.jpg: file does not exist"):
        load_rgb(tmp_path / "gone.jpg")


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    Image.new("L", (5, 4), 77).save(tmp_path / "gray.png")
    image = load_rgb(tmp_path / "gray.png")
    assert image.mode == "RGB" and image.size == (5, 4)
    assert np.asarray(image)[0, 0].tolist() == [77, 77, 77]


def test_rgba_transparency_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 200, 30, 255)  # opaque
    rgba[0, 1] = (250, 250, 250, 0)  # fully transparent
    rgba[1, 0] = (200, 100, 0, 128)  # half transparent
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    pixels = np.asarray(load_rgb(tmp_path / "alpha.png"))
    assert pixels[0, 0].tolist() == [10, 200, 30]
    assert pixels[0, 1].tolist() == [0, 0, 0]
    assert abs(int(pixels[1, 0, 0]) - 100) <= 1 and abs(int(pixels[1, 0, 1]) - 50) <= 1


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # pure red in CMYK
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    red, green, blue = np.asarray(load_rgb(tmp_path / "cmyk.jpg"))[4, 4].tolist()
    assert red > 200 and green < 50 and blue < 50


def test_16_bit_png_scaled_to_8_bit(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 100], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    pixels = np.asarray(load_rgb(tmp_path / "deep.png"))[..., 0]
    assert pixels.tolist() == [[0, 100], [128, 255]]


def test_palette_images_with_and_without_transparency(tmp_path: Path) -> None:
    palette_image = Image.new("P", (3, 1))
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette_image.putdata([0, 1, 2])
    palette_image.save(tmp_path / "palette.png")
    pixels = np.asarray(load_rgb(tmp_path / "palette.png"))
    assert pixels.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]
    palette_image.save(tmp_path / "palette_transparent.png", transparency=1)
    assert np.asarray(load_rgb(tmp_path / "palette_transparent.png"))[0, 1].tolist() == [0, 0, 0]


def test_exif_orientation_applied(tmp_path: Path) -> None:
    array = np.zeros((4, 8, 3), dtype=np.uint8)
    array[:, :4] = (255, 0, 0)  # left half red
    array[:, 4:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    image = load_rgb(tmp_path / "rotated.jpg")
    assert image.size == (4, 8)  # displayed portrait
    pixels = np.asarray(image).astype(int)
    assert pixels[1, 2, 0] > 200 and pixels[1, 2, 2] < 60  # the left side is now on top
    assert pixels[6, 2, 2] > 200 and pixels[6, 2, 0] < 60


def _png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A real PNG whose header says width x height (the data is tiny): a decompression bomb."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr_start = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr_start : ihdr_start + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr_start + 13])) & 0xFFFFFFFF
    data[ihdr_start + 13 : ihdr_start + 17] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_huge_image_refused_without_exhausting_memory(tmp_path: Path) -> None:
    bomb = _png_claiming_size(tmp_path / "bomb.png", 20000, 20000)
    assert struct.unpack(">II", bomb.read_bytes()[16:24]) == (20000, 20000)
    tracemalloc.start()
    with pytest.raises(BadImageError, match=r"bomb.png: .*(400000000 pixels|20000x20000)"):
        load_rgb(bomb)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 1024 * 1024  # a decoded 20000x20000 RGB image would need 1.2 GB


def test_large_jpeg_refused_or_downscaled_while_decoding(tmp_path: Path) -> None:
    big = jpeg(tmp_path / "big.jpg", size=(2400, 1600))
    with pytest.raises(BadImageError, match=r"big.jpg: image is 2400x1600 pixels, above the limit of 1000000"):
        load_rgb(big, max_pixels=1_000_000)
    small = load_rgb(big, max_side=300, max_pixels=1_000_000)  # libjpeg decodes at 1/8 scale
    assert small.size == (300, 200)
    assert np.asarray(small)[100, 150, 0] > 180


def test_non_utf8_file_name_loads_and_errors_print(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 byte, invalid UTF-8
    jpeg(tmp_path / name)
    assert load_rgb(tmp_path / name).size == (32, 24)
    broken = tmp_path / os.fsdecode(b"bad\xff.jpg")
    broken.write_bytes(b"\x00\x01")
    with pytest.raises(BadImageError) as caught:
        load_rgb(broken)
    message = str(caught.value)
    message.encode("utf-8")  # printable: the odd byte is written as \xff
    assert "bad\\xff.jpg: cannot decode image" in message


def test_utm_layout_names_without_at_or_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "ds" / "images" / "test"
    jpeg(_mk(folder / "database") / "@10.0@20.0@17@T@@@@@@@@@@.jpg")
    jpeg(_mk(folder / "queries") / "@12.0@20.0@17@T@@@@@@@@@@.jpg")
    jpeg(folder / "database" / "IMG_0001.jpg")
    jpeg(folder / "queries" / os.fsdecode(b"@1.0@2.0@\xe9@.jpg"))
    with pytest.raises(DatasetError, match="IMG_0001.jpg: file name has no '@east@north@' UTM fields"):
        open_dataset(tmp_path / "ds")
    dataset = open_dataset(tmp_path / "ds", on_bad_name="skip")
    assert (dataset.num_database, dataset.num_queries) == (1, 1)
    assert skipped_summary(dataset) == "skipped 2 files: 2 bad_name"
    assert dataset.positives_per_query()[0].tolist() == [0]


def test_on_bad_image_skip_counts_and_keeps_good_ones(tmp_path: Path) -> None:
    for i in range(3):
        jpeg(_mk(tmp_path / "photos") / f"good_{i}.jpg")
    (tmp_path / "photos" / "zero.jpg").write_bytes(b"")
    errors = find_bad_images(sorted((tmp_path / "photos").iterdir()))
    assert [error.path.name for error in errors] == ["zero.jpg"]
    dataset = open_dataset(tmp_path / "photos", on_bad_image="skip")
    assert dataset.num_database == 3 and skipped_summary(dataset) == "skipped 1 files: 1 bad_image"


def test_transform_output_of_awkward_inputs(tmp_path: Path) -> None:
    Image.new("LA", (9, 7), (50, 255)).save(tmp_path / "la.png")
    tensor = image_transform((6, 4), mean=(0, 0, 0), std=(1, 1, 1))(load_rgb(tmp_path / "la.png"))
    assert tuple(tensor.shape) == (3, 6, 4)
    assert abs(float(tensor[0, 0, 0]) - 50 / 255) < 1e-6


def _mk(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder
