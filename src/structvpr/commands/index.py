"""`structvpr index build FOLDER --model M --out DIR`: describe a map folder and index it.

Resumable and safe to rerun: descriptors go to `<out>.partial` in atomic chunks that record their
model and images. A rerun (after a kill, a corrected --model, a deleted or repaired image) reuses
every row whose model and image still match and describes only the rest; --restart discards them.
One build at a time writes an --out: a second one exits naming the first, and the lock of a
killed build is taken over. Arguments, the output folder and the index parameters are checked
before any image is described.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from structvpr.commands import add_common_arguments, positive_int
from structvpr.index.parameters import KINDS

if TYPE_CHECKING:
    from structvpr.index.build import IndexBuildResult


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `index` subcommand (with its `build` action)."""
    parser = subparsers.add_parser(
        "index",
        help="build a place index (FAISS) from a folder of map images",
        description="Describe every image under FOLDER with a model and build a PlaceIndex that "
        "`structvpr query` searches. Image paths and, for @UTM_east@UTM_north@ file "
        "names, poses are stored with the index.",
    )
    actions = parser.add_subparsers(dest="index_action", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="describe FOLDER's images and build an index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("folder", type=Path, metavar="FOLDER", help="map images (searched recursively)")
    build.add_argument(
        "--model",
        required=True,
        help="model file (model.pt), run or demo folder, exported .onnx, or a built-in name",
    )
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="index folder to write")
    build.add_argument("--kind", choices=KINDS, default="flat", help="index kind (default flat = exact)")
    build.add_argument("--nlist", type=positive_int, default=None, help="IVF lists (default ~4 sqrt(N))")
    build.add_argument("--pq-m", type=positive_int, default=32, help="ivfpq: bytes per code (must divide D)")
    build.add_argument("--pq-nbits", type=positive_int, default=8, help="ivfpq: bits per sub-quantiser index")
    build.add_argument("--opq", action="store_true", help="ivfpq: learn an OPQ rotation first")
    build.add_argument("--hnsw-m", type=positive_int, default=32, help="hnsw: graph degree")
    build.add_argument("--ef-construction", type=positive_int, default=80, help="hnsw: build breadth")
    build.add_argument("--train-size", type=positive_int, default=None, help="quantiser training sample size")
    build.add_argument(
        "--no-store-vectors",
        action="store_true",
        help="ivfpq: do not keep raw descriptors (no exact re-ranking; smaller on disk)",
    )
    build.add_argument("--chunk-size", type=positive_int, default=1024, help="images per descriptor chunk on disk")
    build.add_argument("--batch-size", type=positive_int, default=32)
    build.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    build.add_argument(
        "--on-bad-image",
        choices=("error", "skip"),
        default="error",
        help="an undecodable image stops the build naming it (error, default) or is left out and counted (skip)",
    )
    build.add_argument(
        "--restart", action="store_true", help="discard the descriptors of earlier unfinished builds in <out>.partial"
    )
    build.add_argument(
        "--keep-descriptors",
        action="store_true",
        help="keep <out>.partial (descriptor chunks) after the index is saved",
    )
    build.add_argument("--quiet", action="store_true", help="no progress output")
    add_common_arguments(build)
    parser.set_defaults(run=run)


def _index_options(args: argparse.Namespace) -> dict:
    return {
        "kind": args.kind,
        "nlist": args.nlist,
        "pq_m": args.pq_m,
        "pq_nbits": args.pq_nbits,
        "opq": args.opq,
        "hnsw_m": args.hnsw_m,
        "ef_construction": args.ef_construction,
        "train_size": args.train_size,
        "store_vectors": False if args.no_store_vectors else None,
    }


def _check_parameters(args: argparse.Namespace, count: int, dim: int | None) -> None:
    from structvpr.index.parameters import check_build_parameters

    options = _index_options(args)
    del options["opq"], options["store_vectors"]
    check_build_parameters(count=count, dim=dim, **options)


def run(args: argparse.Namespace) -> int:
    """Build the index; returns 0. Everything is checked before the first image is described."""
    from structvpr.index.build import check_index_output
    from structvpr.locks import output_lock
    from structvpr.output_paths import check_output_folder

    check_output_folder(args.out, "index folder")
    check_index_output(args.out)
    with output_lock(args.out):  # taken before torch loads: a second writer is told at once
        result = _build(args)
    if result.reused:
        print(f"reused {result.reused} descriptors of an earlier unfinished build")
    if result.skipped:
        print(f"skipped {len(result.skipped)} files: {len(result.skipped)} bad_image (first: {result.skipped[0]})")
    print(f"{result.index.summary()} -> {args.out}")
    return 0


def _build(args: argparse.Namespace) -> IndexBuildResult:
    from structvpr.api import load
    from structvpr.data.listing import list_images
    from structvpr.index.build import build_index
    from structvpr.progress import status

    image_paths = list_images(args.folder, "map image")
    if not image_paths:
        raise ValueError(f"{args.folder}: no images found (jpg, png, ...)")
    _check_parameters(args, len(image_paths), None)
    with status(f"loading model {args.model}", enabled=not args.quiet):
        model = load(args.model, device=args.device)
    _check_parameters(args, len(image_paths), model.descriptor_dim)
    print(f"{len(image_paths)} map images under {args.folder}; model {args.model} (D = {model.descriptor_dim})")
    model_path = Path(args.model)
    return build_index(
        args.folder,
        image_paths,
        model,
        args.out,
        index_options=_index_options(args),
        chunk_size=args.chunk_size,
        batch_size=args.batch_size,
        on_bad_image=args.on_bad_image,
        restart=args.restart,
        keep_work=args.keep_descriptors,
        model_name=str(model_path.resolve()) if model_path.exists() else str(args.model),
        progress=not args.quiet,
    )
