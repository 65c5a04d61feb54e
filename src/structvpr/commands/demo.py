"""`structvpr demo`: the whole StructVPR++ pipeline on the built-in synthetic town."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from structvpr.commands import add_common_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on the synthetic town and write a report",
        description="Generate a synthetic town, train the seg teacher and RGB baseline (Stage I), partition "
        "the samples, train the StructVPR++ student (Stage II), evaluate, index, export to ONNX "
        "and write report.html. No download needed.",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/demo/<timestamp>)")
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="DIR",
        help="resume (or re-run the report of) the demo in DIR with its saved settings",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller demo (< 3 minutes on 2 CPU cores)")
    parser.add_argument("--places", type=int, default=None, help="places in the town")
    parser.add_argument("--seed", type=int, default=None, help="random seed (town and training)")
    parser.add_argument(
        "--stage1-epochs", type=int, default=None, help="epochs of each Stage I branch (default 7, lr 1e-3)"
    )
    parser.add_argument("--stage2-epochs", type=int, default=None, help="epochs of Stage II (default 6, lr 3e-4)")
    parser.add_argument(
        "--segmenter",
        choices=["exact", "espnetv2"],
        default=None,
        help="exact synthetic labels (default) or the real ESPNetv2 network",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ...")
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run or resume the demo."""
    from structvpr.demo import DemoSettings, load_settings, run_demo

    if args.resume is not None:
        settings, out_dir = load_settings(args.resume), args.resume
    else:
        settings = DemoSettings.quick() if args.quick else DemoSettings()
        changes = {
            "places": args.places,
            "seed": args.seed,
            "segmenter": args.segmenter,
            "device": args.device,
            "stage1_epochs": args.stage1_epochs,
            "stage2_epochs": args.stage2_epochs,
        }
        for key, value in changes.items():
            if value is not None:
                setattr(settings, key, value)
        out_dir = args.out or Path("runs/demo") / time.strftime("%Y%m%d-%H%M%S")
    run_demo(out_dir, settings)
    return 0
