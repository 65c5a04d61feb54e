"""The `structvpr export --int8` options and their defaults (no torch or onnx at import)."""

from __future__ import annotations

import argparse
from pathlib import Path

# The int8 defaults (export_int8 reads them from here: no torch needed to parse)
MIN_COSINE = 0.95
MIN_RETRIEVAL = 0.9
# Convolutions kept in float at the start of the network: the stem, the first depthwise and the
# first projection convolution (docs/deployment.md has the measurements behind 3)
FLOAT_FIRST_CONVOLUTIONS = 3
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """--int8, --calibration-images, --int8-min-cosine, --int8-min-retrieval, --int8-float-first,
    --int8-calibration, --int8-reduce-range."""
    group = parser.add_argument_group("int8 (ONNX only; docs/deployment.md)")
    group.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantisation calibrated on --calibration-images, checked against fp32 on held-out ones",
    )
    group.add_argument(
        "--calibration-images",
        type=Path,
        nargs="+",
        default=None,
        metavar="IMAGE_OR_FOLDER",
        help="map images (files or folders) to calibrate on; a quarter is held out for the check",
    )
    group.add_argument("--int8-min-cosine", type=float, default=MIN_COSINE, help="refuse below this mean cosine")
    group.add_argument(
        "--int8-min-retrieval",
        type=float,
        default=MIN_RETRIEVAL,
        help="refuse when fewer held-out images find their fp32 top-1 map image in the int8 top 5",
    )
    group.add_argument(
        "--int8-float-first",
        type=_non_negative,
        default=FLOAT_FIRST_CONVOLUTIONS,
        metavar="N",
        help=f"keep the first N convolutions in float (default {FLOAT_FIRST_CONVOLUTIONS}; the last one and the "
        "pooling always are)",
    )
    group.add_argument(
        "--int8-calibration",
        choices=CALIBRATION_METHODS,
        default="minmax",
        help="activation range calibration (entropy and percentile hold every calibration image's activations "
        "in memory and take ~6x longer)",
    )
    group.add_argument(
        "--int8-reduce-range", action="store_true", help="7-bit weights, for CPUs without VNNI (AVX2-only)"
    )


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def calibration_paths(items: list[Path]) -> list[Path]:
    """Image files of --calibration-images: files as given, folders listed (sorted)."""
    from structvpr.data.listing import list_images

    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            paths.extend(list_images(item, "calibration image"))
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such calibration image or folder")
    return paths
