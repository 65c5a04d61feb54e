"""`structvpr export --model M --format onnx|torchscript --out F`: the RGB model outside Python."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from structvpr.commands import add_common_arguments
from structvpr.export_int8_args import add_int8_arguments, calibration_paths

FORMATS = ("onnx", "torchscript")  # = structvpr.export.FORMATS, without importing torch to parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a model's global descriptor to ONNX or TorchScript",
        description="Export the RGB model (images float32 [B, 3, H, W], normalised -> descriptors "
        "[B, D]) with a dynamic batch size. The file is re-loaded and its descriptors "
        "are compared with PyTorch at batch 1 and 7; the max abs difference is printed "
        "and the export fails above --tolerance.",
    )
    parser.add_argument("--model", required=True, help="model file (model.pt), run folder or built-in name")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="export format")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    parser.add_argument(
        "--check-images",
        type=Path,
        nargs="*",
        default=None,
        metavar="IMAGE",
        help="real images for the check (default: seeded random inputs)",
    )
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs descriptor difference allowed")
    add_int8_arguments(parser)
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export and verify; returns 0 (errors name the file and problem)."""
    from structvpr.locks import output_lock
    from structvpr.output_paths import check_output_file
    from structvpr.progress import status

    check_output_file(args.out, f"{args.format} file")
    with output_lock(args.out):
        from structvpr.api import load
        from structvpr.export import export_model

        with status(f"loading model {args.model}"):
            model = load(args.model, device="cpu")
        if model.network is None:
            raise ValueError(f"{args.model}: already an exported model; export from a structvpr model file")
        if args.int8:
            with status(f"exporting int8 ONNX to {args.out}, calibrating and checking it against fp32"):
                _export_int8(model.network, args)
        else:
            with status(f"exporting to {args.out} and checking it against PyTorch"):
                export_model(
                    model.network, args.out, args.format, check_images=args.check_images, tolerance=args.tolerance
                )
    height, width = model.image_size
    print(
        f"input: images float32 [B, 3, {height}, {width}], normalised with mean {model.mean} and std "
        f"{model.std}; output: descriptors float32 [B, {model.descriptor_dim}], L2-normalised"
    )
    return 0


def _export_int8(network: Any, args: argparse.Namespace) -> None:
    """`export --int8`: export_int8_onnx with the parsed options (errors name the file and problem)."""
    if args.format != "onnx":
        raise ValueError(f"--int8 needs --format onnx, not {args.format}")
    if not args.calibration_images:
        raise ValueError("--int8 needs --calibration-images: map images (files or folders) to calibrate on")
    from structvpr.export_int8 import export_int8_onnx

    export_int8_onnx(
        network,
        args.out,
        calibration_paths(args.calibration_images),
        min_cosine=args.int8_min_cosine,
        min_retrieval=args.int8_min_retrieval,
        reduce_range=args.int8_reduce_range,
        float_first=args.int8_float_first,
        calibration_method=args.int8_calibration,
    )
