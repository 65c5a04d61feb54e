"""`structvpr synth`: render the synthetic town dataset and/or its preview contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

from structvpr.commands import add_common_arguments

_PREVIEW_DEFAULT = "<out>/preview.png"
# = structvpr.data.synth's CONDITIONS, DATABASE_CONDITION and DEFAULT_QUERY_CONDITIONS (a test checks
# it), spelled out so that parsing the arguments does not import the renderer and torch.
CONDITIONS = ("day", "dusk", "night", "winter", "fog", "rain")
DATABASE_CONDITION = "day"
DEFAULT_QUERY_CONDITIONS = ("dusk", "night", "winter", "fog")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` subcommand."""
    parser = subparsers.add_parser(
        "synth",
        help="render the synthetic town (UTM layout + exact label maps + metadata.csv)",
        description="Render a procedural town with exact Cityscapes trainId label maps. Database "
        "images are captured in the database condition, queries in the others; "
        "train/val/test places lie in disjoint x-ranges. Same seed -> same bytes.",
    )
    parser.add_argument("--out", type=Path, help="output dataset folder")
    parser.add_argument("--places", type=int, default=200, help="number of places (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="town and rendering seed (default 0)")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=(120, 160),
        help="image height and width in pixels (default 120 160)",
    )
    parser.add_argument(
        "--conditions",
        nargs="+",
        default=list(DEFAULT_QUERY_CONDITIONS),
        choices=list(CONDITIONS),
        metavar="NAME",
        help=f"query conditions (default: {' '.join(DEFAULT_QUERY_CONDITIONS)}; known: {', '.join(CONDITIONS)})",
    )
    parser.add_argument(
        "--database-condition",
        default=DATABASE_CONDITION,
        choices=list(CONDITIONS),
        help=f"condition of the database images (default {DATABASE_CONDITION})",
    )
    parser.add_argument(
        "--same-condition-fraction",
        type=float,
        default=0.25,
        help="fraction of places that also get a query in the database condition (default 0.25)",
    )
    parser.add_argument(
        "--split-fractions",
        type=float,
        nargs=3,
        default=(0.6, 0.15, 0.25),
        metavar=("TRAIN", "VAL", "TEST"),
        help="places per split (default 0.6 0.15 0.25)",
    )
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument(
        "--overwrite", action="store_true", help="re-render everything, even into a folder made with other settings"
    )
    parser.add_argument(
        "--preview",
        nargs="?",
        const=_PREVIEW_DEFAULT,
        metavar="PNG",
        help="also write a contact sheet (RGB + labels, all conditions) to PNG "
        "(default <out>/preview.png, or synth_preview.png without --out)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="rendering processes (default 1); the files are identical for any value"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Render the dataset (when --out is given) and the preview (when --preview is given)."""
    from structvpr.locks import output_lock
    from structvpr.output_paths import check_output_file, check_output_folder

    if args.out is None and args.preview is None:
        raise ValueError("give --out DIR (dataset) and/or --preview [PNG] (contact sheet)")
    if args.out is not None:
        check_output_folder(args.out, "dataset folder")
    target = None
    if args.preview is not None:
        if args.preview == _PREVIEW_DEFAULT:
            target = args.out / "preview.png" if args.out is not None else Path("synth_preview.png")
        else:
            target = Path(args.preview)
        check_output_file(target, "preview image")
    with output_lock(args.out if args.out is not None else target):
        _render(args, target)
    return 0


def _render(args: argparse.Namespace, preview: Path | None) -> None:
    from structvpr.data.synth import generate_town, render_preview
    from structvpr.progress import status

    if args.out is not None:
        result = generate_town(
            args.out,
            args.places,
            seed=args.seed,
            image_size=tuple(args.image_size),
            query_conditions=tuple(args.conditions),
            database_condition=args.database_condition,
            same_condition_fraction=args.same_condition_fraction,
            split_fractions=tuple(args.split_fractions),
            jpeg_quality=args.jpeg_quality,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            workers=args.workers,
        )
        print(
            f"synth: {result.num_images} images of {args.places} places in {result.out_dir} "
            f"({result.rendered} rendered, {result.reused} reused, {result.seconds:.1f} s); "
            f"metadata: {result.metadata_path}"
        )
    if preview is not None:
        # The preview shows the town just generated (or that --places and --seed would generate):
        # the same places, conditions and image size.
        with status(f"rendering the preview {preview}", enabled=not args.no_progress):
            render_preview(
                preview,
                seed=args.seed,
                conditions=(args.database_condition, *[c for c in args.conditions if c != args.database_condition]),
                town_places=args.places,
                split_fractions=tuple(args.split_fractions),
                image_size=tuple(args.image_size),
            )
        print(f"synth: preview written to {preview}")
