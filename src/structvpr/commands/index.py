"""`structvpr index build FOLDER --model M --kind ivfpq --out DIR`: describe a map folder and index it.

Resumable: descriptors are written to `<out>.partial/chunk_<n>.npy` (one atomic file per
--chunk-size images) with a manifest naming the image list and the model's hash. A killed build,
run again with the same arguments, skips the chunks already on disk. The work folder is removed
once the index is saved (keep it with --keep-descriptors).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from structvpr.commands import add_common_arguments
from structvpr.index.place_index import KINDS

WORK_FORMAT = "structvpr-index-build"


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
        "--model", required=True, help="model file (model.pt), run folder, exported .onnx, or a built-in name"
    )
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="index folder to write")
    build.add_argument("--kind", choices=KINDS, default="flat", help="index kind (default flat = exact)")
    build.add_argument("--nlist", type=int, default=None, help="IVF lists (default ~4 sqrt(N))")
    build.add_argument("--pq-m", type=int, default=32, help="ivfpq: bytes per code (must divide D)")
    build.add_argument("--pq-nbits", type=int, default=8, help="ivfpq: bits per sub-quantiser index")
    build.add_argument("--opq", action="store_true", help="ivfpq: learn an OPQ rotation first")
    build.add_argument("--hnsw-m", type=int, default=32, help="hnsw: graph degree")
    build.add_argument("--ef-construction", type=int, default=80, help="hnsw: build breadth")
    build.add_argument("--train-size", type=int, default=None, help="quantiser training sample size")
    build.add_argument(
        "--no-store-vectors",
        action="store_true",
        help="ivfpq: do not keep raw descriptors (no exact re-ranking; smaller on disk)",
    )
    build.add_argument("--chunk-size", type=int, default=1024, help="images per descriptor chunk on disk")
    build.add_argument("--batch-size", type=int, default=32)
    build.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda")
    build.add_argument(
        "--keep-descriptors",
        action="store_true",
        help="keep <out>.partial (descriptor chunks) after the index is saved",
    )
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    add_common_arguments(build)
    parser.set_defaults(run=run)


def _model_fingerprint(model_argument: str) -> str:
    """sha256 of the model file (or the built-in name), so a resume never mixes two models."""
    from structvpr.io_utils import sha256_of_file

    path = Path(model_argument)
    if path.is_dir() and (path / "model.pt").is_file():
        path = path / "model.pt"
    return sha256_of_file(path) if path.is_file() else f"name:{model_argument}"


def _open_work_folder(work: Path, paths: list[str], fingerprint: str, chunk_size: int) -> None:
    """Create the work folder's manifest, or check that an existing one is for the same build."""
    listing = hashlib.sha256("\n".join(paths).encode("utf-8", "surrogateescape")).hexdigest()
    manifest = {
        "format": WORK_FORMAT,
        "images_sha256": listing,
        "count": len(paths),
        "model": fingerprint,
        "chunk_size": chunk_size,
    }
    manifest_path = work / "manifest.json"
    if manifest_path.is_file():
        previous = json.loads(manifest_path.read_text(encoding="utf-8"))
        if previous != manifest:
            changed = [key for key in manifest if previous.get(key) != manifest[key]]
            raise ValueError(
                f"{work}: an unfinished build with a different {', '.join(changed)} is here; "
                "delete the folder to start over"
            )
        return
    from structvpr.io_utils import atomic_write_text

    atomic_write_text(manifest_path, json.dumps(manifest, indent=2))


def describe_in_chunks(
    model, image_paths: list[Path], work: Path, chunk_size: int, batch_size: int, progress: bool = True
) -> np.ndarray:
    """Descriptors float32 [N, D] of `image_paths`, one `chunk_<n>.npy` per `chunk_size` images in
    `work`; chunks already there (from a killed run) are reused, not recomputed."""
    from tqdm import tqdm

    from structvpr.index.place_index import _load_npy, _save_npy

    chunks = []
    done = sum(
        min(chunk_size, len(image_paths) - start)
        for start in range(0, len(image_paths), chunk_size)
        if (work / f"chunk_{start // chunk_size:06d}.npy").is_file()
    )
    with tqdm(total=len(image_paths), initial=done, desc="describing map", unit="img", disable=not progress) as bar:
        for start in range(0, len(image_paths), chunk_size):
            chunk_path = work / f"chunk_{start // chunk_size:06d}.npy"
            expected_rows = min(chunk_size, len(image_paths) - start)
            if chunk_path.is_file():
                try:
                    chunk = _load_npy(chunk_path, mmap=True)
                except (OSError, ValueError) as error:
                    raise ValueError(
                        f"{chunk_path}: unreadable descriptor chunk ({error}); delete {work} to start over"
                    ) from error
                if chunk.shape[0] != expected_rows:
                    raise ValueError(
                        f"{chunk_path}: {chunk.shape[0]} rows, expected {expected_rows}; delete {work} to start over"
                    )
            else:
                parts = []
                for batch_start in range(start, start + expected_rows, batch_size):
                    batch = image_paths[batch_start : min(batch_start + batch_size, start + expected_rows)]
                    parts.append(model.describe(batch, batch_size=batch_size))
                    bar.update(len(batch))
                chunk = np.concatenate(parts)
                _save_npy(chunk_path, chunk)  # atomic: a kill leaves no torn chunk
            chunks.append(chunk)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def run(args: argparse.Namespace) -> int:
    """Build the index; returns 0. Errors name the file and problem."""
    from structvpr.api import load
    from structvpr.data.layouts.utm import utm_from_name
    from structvpr.data.listing import list_images
    from structvpr.index.place_index import PlaceIndex

    if args.chunk_size < 1 or args.batch_size < 1:
        raise ValueError("--chunk-size and --batch-size must be >= 1")
    image_paths = list_images(args.folder, "map image")
    if not image_paths:
        raise ValueError(f"{args.folder}: no images found (jpg, png, ...)")
    relative = [str(path.relative_to(args.folder)) for path in image_paths]
    work = args.out.with_name(args.out.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    fingerprint = _model_fingerprint(args.model)
    _open_work_folder(work, relative, fingerprint, args.chunk_size)
    model = load(args.model, device=args.device)
    print(f"{len(image_paths)} map images under {args.folder}; model {args.model} (D = {model.descriptor_dim})")
    descriptors = describe_in_chunks(
        model, image_paths, work, args.chunk_size, args.batch_size, progress=not args.quiet
    )
    metadata: dict[str, object] = {"paths": relative}
    poses = [utm_from_name(path) for path in image_paths]
    if all(pose is not None for pose in poses):
        metadata["poses"] = np.asarray(poses, dtype=np.float64)  # UTM east, north in metres
    index = PlaceIndex.build(
        descriptors,
        kind=args.kind,
        metadata=metadata,
        nlist=args.nlist,
        pq_m=args.pq_m,
        pq_nbits=args.pq_nbits,
        opq=args.opq,
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        train_size=args.train_size,
        store_vectors=False if args.no_store_vectors else None,
    )
    model_path = Path(args.model)
    recorded_model = str(model_path.resolve()) if model_path.exists() else str(args.model)  # or a built-in name
    index.info = {
        "model": recorded_model,
        "model_sha256": fingerprint,
        "image_root": str(args.folder.resolve()),
        "descriptor_dim": model.descriptor_dim,
    }
    index.save(args.out)
    if not args.keep_descriptors:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{index.describe()} -> {args.out}")
    return 0
