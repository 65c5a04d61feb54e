"""The `structvpr export --int8` options, and running the int8 export from them (no torch at import)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

# The int8 check's defaults (export_int8 reads them from here: no torch needed to parse)
MIN_COSINE = 0.95
MIN_RETRIEVAL = 0.9


def add_int8_arguments(parser: argparse.ArgumentParser) -> None:
    """--int8, --calibration-images, --int8-min-cosine, --int8-min-retrieval, --int8-reduce-range."""
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
        "--int8-reduce-range", action="store_true", help="7-bit weights, for CPUs without VNNI (AVX2-only)"
    )


def _image_paths(items: list[Path]) -> list[Path]:
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


def int8_export_from_args(network: Any, args: argparse.Namespace) -> None:
    """Run `export_int8_onnx` with the parsed options (errors name the file and problem)."""
    if args.format != "onnx":
        raise ValueError(f"--int8 needs --format onnx, not {args.format}")
    if not args.calibration_images:
        raise ValueError("--int8 needs --calibration-images: map images (files or folders) to calibrate on")
    from structvpr.export_int8 import export_int8_onnx

    export_int8_onnx(
        network,
        args.out,
        _image_paths(args.calibration_images),
        min_cosine=args.int8_min_cosine,
        min_retrieval=args.int8_min_retrieval,
        reduce_range=args.int8_reduce_range,
    )
