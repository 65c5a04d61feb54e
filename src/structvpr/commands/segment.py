"""`structvpr segment DATASET`: build the `*_labels/<stem>.png` label-map cache for every image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from structvpr.commands import add_common_arguments
from structvpr.commands.dataset_args import add_dataset_arguments, dataset_from_args

PREVIEW_COUNT = 8


def _size_wxh(text: str) -> tuple[int, int]:
    """'512x256' (W x H) -> (H, W)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 512x256, got {text!r}") from error
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `segment` subcommand."""
    parser = subparsers.add_parser(
        "segment",
        help="write Cityscapes label maps for every image of a dataset (resumable)",
        description="Segment every database and query image of DATASET (any layout, or a plain folder "
        "of images) and write <folder>_labels/<stem>.png (uint8 Cityscapes trainIds, "
        "255 = ignore) at each image's original size. Finished, valid label maps are kept.",
    )
    parser.add_argument("dataset", type=Path, help="dataset root or a folder of images")
    parser.add_argument("--segmenter", choices=("espnetv2", "hf"), default="espnetv2")
    parser.add_argument(
        "--width",
        type=float,
        choices=(2.0, 0.5),
        default=2.0,
        help="ESPNetv2 width s (2.0: 66.4 mIoU on Cityscapes val; 0.5: 53.9 mIoU, lighter)",
    )
    parser.add_argument(
        "--input-size",
        type=_size_wxh,
        default=None,
        metavar="WxH",
        help="network input size (default 512x256 for espnetv2, 1024x512 for hf)",
    )
    parser.add_argument("--hf-model", default=None, help="transformers model folder or hub id (for --segmenter hf)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-workers", type=int, default=2, help="image-decoding worker processes")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: CPU cores minus --num-workers, at least 1)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument(
        "--preview",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"also write {PREVIEW_COUNT} image | labels | merged previews to DIR",
    )
    parser.add_argument(
        "--merge-table", default="structural-6", help="merge table for --preview: a built-in name or a YAML file"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataset_arguments(parser)  # includes --on-bad-image {error,skip}
    add_common_arguments(parser)
    parser.set_defaults(run=run)


def dataset_image_paths(args: argparse.Namespace) -> list[Path]:
    """Database then query images of the dataset (any layout; a plain folder: every image in it)."""
    # The cache decodes every image anyway and reports bad ones itself, so the reader must not
    # pre-decode (its on_bad_image="skip" would) and silently drop them from the count.
    reader_args = argparse.Namespace(**{**vars(args), "on_bad_image": "error"})
    dataset = dataset_from_args(args.dataset, reader_args)
    paths = list(dict.fromkeys([*dataset.database_paths, *dataset.query_paths]))
    if not paths:
        raise FileNotFoundError(f"{args.dataset}: no images found")
    return paths[: args.limit] if args.limit is not None else paths


def _write_previews(paths: list[Path], folder: Path, table_name: str) -> None:
    from structvpr.data.images import load_rgb
    from structvpr.data.label_maps import label_path_for, read_label_map
    from structvpr.segment.classes import load_merge_table
    from structvpr.segment.visualize import save_side_by_side

    table = load_merge_table(table_name)
    for path in paths[:PREVIEW_COUNT]:
        label_path = label_path_for(path)
        if label_path.is_file():
            save_side_by_side(folder / f"{path.stem}_preview.png", load_rgb(path), read_label_map(label_path), table)


def run(args: argparse.Namespace) -> int:
    """Build the label-map cache and print the summary; 0 on success."""
    if args.batch_size < 1 or args.num_workers < 0 or (args.limit is not None and args.limit < 1):
        raise ValueError("--batch-size and --limit must be >= 1 and --num-workers >= 0")
    from structvpr.locks import output_lock

    # The label maps go beside the images, inside the dataset: the lock file lives there too.
    lock_folder = args.dataset if args.dataset.is_dir() else args.dataset.parent
    if not lock_folder.is_dir():
        return _segment(args)  # no dataset there: the reader names the path
    with output_lock(args.dataset, lock_file=lock_folder / ".structvpr-segment.lock"):
        return _segment(args)


def _segment(args: argparse.Namespace) -> int:
    from structvpr.segment.cache import build_label_cache, default_compute_threads
    from structvpr.segment.segmenters import build_segmenter

    paths = dataset_image_paths(args)
    options: dict = {} if args.input_size is None else {"input_size": args.input_size}
    if args.segmenter == "espnetv2":
        options["width"] = args.width
    else:
        if not args.hf_model:
            raise ValueError("--segmenter hf needs --hf-model (a local folder or a hub id)")
        options["model"] = args.hf_model
    segmenter = build_segmenter(args.segmenter, device=args.device, **options)
    summary = build_label_cache(
        paths,
        segmenter,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        on_bad_image=args.on_bad_image,
        progress=not args.quiet,
        compute_threads=args.threads or default_compute_threads(args.num_workers),
    )
    print(summary.format())
    if args.preview is not None:
        _write_previews(paths, args.preview, args.merge_table)
        print(f"previews written to {args.preview}")
    sys.stdout.flush()
    return 0
