"""Build a PlaceIndex from a folder of map images, resumably: the work of a killed or failed build
is kept and reused.

Descriptors are written to a work folder (`<out>.partial`) as chunk files, one atomic
`chunk_<n>.npz` per `chunk_size` described images. Each chunk records the sha256 of the model that
made it and, per row, the image's key (relative path, size, modification time). A new build
reuses every row whose model and key still match and describes only the rest, so a corrected
`--model`, a deleted or repaired image, or a grown map keeps the finished work. `restart=True`
throws it away on purpose. The work folder is removed once the index is saved.

Callers that may run concurrently hold `structvpr.locks.output_lock(out)` around `build_index`
(the CLI does).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from structvpr.index.place_index import IndexFileError, PlaceIndex
from structvpr.io_utils import atomic_write
from structvpr.progress import progress_bar, status

BAD_IMAGE_POLICIES = ("error", "skip")
_CHUNK_NAME = re.compile(r"^chunk_(\d{6,})\.npz$")


def work_folder_for(out: str | Path) -> Path:
    """The work folder of a build writing index folder `out`: `<out>.partial` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def check_index_output(out: str | Path) -> None:
    """Raise IndexFileError if `out` exists and is not a structvpr index folder (a build would refuse
    to replace it after all the work)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise IndexFileError(f"{out}: exists and is not a folder; --out names the index folder to write")
    if out.is_dir() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise IndexFileError(
            f"{out}: exists, is not empty and is not a structvpr index folder; refusing to replace it "
            "(give a new --out folder)"
        )


def image_key(path: Path, relative: str) -> str:
    """Identity of one map image for reuse: its path in the map, size in bytes and mtime (ns)."""
    stat = path.stat()
    return f"{relative}\t{stat.st_size}\t{stat.st_mtime_ns}"


class DescriptorChunks:
    """The chunk files of a work folder: (model sha256, image keys, descriptors) per chunk."""

    def __init__(self, work: Path, model_sha256: str, dim: int) -> None:
        self.work, self.model_sha256, self.dim = Path(work), model_sha256, int(dim)

    def chunk_files(self) -> list[Path]:
        """Chunk files in the work folder, in the order they were written."""
        if not self.work.is_dir():
            return []
        return sorted(path for path in self.work.iterdir() if _CHUNK_NAME.match(path.name))

    def clear(self) -> int:
        """Delete every chunk (a deliberate restart); returns how many there were."""
        files = self.chunk_files()
        for path in files:
            path.unlink()
        return len(files)

    def load_matching(self, wanted: set[str]) -> dict[str, np.ndarray]:
        """Rows of this model whose key is in `wanted`, as {key: descriptor float32 [D]}.

        Chunks of other models are left alone (not read past their header). An unreadable chunk
        raises ValueError naming it.
        """
        found: dict[str, np.ndarray] = {}
        for path in self.chunk_files():
            try:
                with np.load(path, allow_pickle=False) as chunk:
                    if str(chunk["model_sha256"]) != self.model_sha256:
                        continue
                    keys = chunk["keys"]
                    rows = [i for i, key in enumerate(keys) if str(key) in wanted]
                    if not rows:
                        continue
                    descriptors = chunk["descriptors"]
            except (OSError, ValueError, KeyError, EOFError) as error:
                reason = "it holds Python objects, refused" if "allow_pickle" in str(error) else str(error)
                raise ValueError(
                    f"{path}: unreadable descriptor chunk ({reason}); delete it, or run again with --restart"
                ) from error
            if descriptors.ndim != 2 or descriptors.shape != (len(keys), self.dim):
                raise ValueError(
                    f"{path}: descriptor chunk of shape {descriptors.shape}, expected ({len(keys)}, {self.dim}); "
                    "delete it, or run again with --restart"
                )
            for row in rows:
                found[str(keys[row])] = descriptors[row].astype(np.float32)
        return found

    def write(self, keys: Sequence[str], descriptors: np.ndarray) -> Path:
        """Add one chunk atomically (a kill leaves either the whole chunk or none)."""
        numbers = [int(match.group(1)) for path in self.chunk_files() if (match := _CHUNK_NAME.match(path.name))]
        path = self.work / f"chunk_{max(numbers, default=-1) + 1:06d}.npz"
        with atomic_write(path, "wb") as handle:
            np.savez(
                handle,
                model_sha256=np.array(self.model_sha256),
                keys=np.array(list(keys), dtype=str),
                descriptors=np.asarray(descriptors, np.float32),
            )
        return path


@dataclass
class DescribedImages:
    """Descriptors of the readable images: rows of `descriptors` belong to `image_numbers`."""

    descriptors: np.ndarray  # float32 [M, D]
    image_numbers: list[int]  # positions in the image list, ascending
    skipped: list[str] = field(default_factory=list)  # '<path>: <reason>' of skipped images
    reused: int = 0
    computed: int = 0


def _describe_batch(model: Any, paths: list[Path], on_bad_image: str) -> tuple[np.ndarray, list[int], list[str]]:
    """Descriptors of the readable `paths` with their positions in the batch, and the skipped ones."""
    from structvpr.data.images import BadImageError

    try:
        return model.describe(paths, batch_size=len(paths)), list(range(len(paths))), []
    except BadImageError as error:
        if on_bad_image != "skip":
            raise BadImageError(
                error.path, f"{error.reason} (or pass --on-bad-image skip to leave such images out)"
            ) from None
    rows, good, skipped = [], [], []
    for number, path in enumerate(paths):
        try:
            rows.append(model.describe([path])[0])
            good.append(number)
        except BadImageError as error:
            skipped.append(str(error))
    dim = int(model.descriptor_dim)
    return (np.stack(rows) if rows else np.empty((0, dim), np.float32)), good, skipped


def describe_images(
    model: Any,
    paths: Sequence[Path],
    chunks: DescriptorChunks | None = None,
    keys: Sequence[str] | None = None,
    chunk_size: int = 1024,
    batch_size: int = 32,
    on_bad_image: str = "error",
    progress: bool = True,
) -> DescribedImages:
    """Describe `paths` with `model`. With `chunks` (and the images' reuse `keys`), rows already
    there are reused and a chunk is added per `chunk_size` newly described images. Bad images
    raise BadImageError naming the file, or with on_bad_image="skip" are left out and listed in
    `skipped`."""
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(f"on_bad_image must be one of {BAD_IMAGE_POLICIES}, got {on_bad_image!r}")
    if chunks is not None and keys is None:
        raise ValueError("describe_images: reusing chunks needs the images' keys")
    keys = list(keys) if keys is not None else [str(number) for number in range(len(paths))]
    known = chunks.load_matching(set(keys)) if chunks is not None else {}
    todo = [number for number, key in enumerate(keys) if key not in known]
    reused = len(keys) - len(todo)
    skipped: list[str] = []
    with progress_bar(len(keys), "describing map", "img", initial=reused, disable=not progress) as bar:
        for start in range(0, len(todo), chunk_size):
            part = todo[start : start + chunk_size]
            rows, good_keys = [], []
            for batch_start in range(0, len(part), batch_size):
                batch = part[batch_start : batch_start + batch_size]
                descriptors, good, bad = _describe_batch(model, [paths[n] for n in batch], on_bad_image)
                rows.append(descriptors)
                good_keys += [keys[batch[g]] for g in good]
                skipped += bad
                bar.update(len(batch))
            if good_keys:
                block = np.concatenate(rows)
                if chunks is not None:
                    chunks.write(good_keys, block)
                known.update(zip(good_keys, block, strict=True))
    numbers = [number for number, key in enumerate(keys) if key in known]
    dim = int(model.descriptor_dim)
    stacked = np.stack([known[keys[n]] for n in numbers]) if numbers else np.empty((0, dim), np.float32)
    return DescribedImages(stacked.astype(np.float32, copy=False), numbers, skipped, reused, len(todo) - len(skipped))


@dataclass
class IndexBuildResult:
    """What `build_index` did: the saved index, skipped images and reused / computed row counts."""

    index: PlaceIndex
    skipped: list[str]
    reused: int
    computed: int


def build_index(
    image_root: Path,
    image_paths: Sequence[Path],
    model: Any,
    out: Path,
    *,
    index_options: dict[str, Any] | None = None,
    chunk_size: int = 1024,
    batch_size: int = 32,
    on_bad_image: str = "error",
    restart: bool = False,
    keep_work: bool = False,
    model_name: str = "",
    progress: bool = True,
) -> IndexBuildResult:
    """Describe `image_paths` (under `image_root`) with `model` (a `structvpr.load` model), build a
    PlaceIndex with `index_options` (keyword arguments of `PlaceIndex.build`) and save it to `out`.

    Paths (relative to image_root) and, for @UTM_east@UTM_north@ names, poses are stored as
    metadata; the model's sha256 and name are recorded in `index.info`. Work in `<out>.partial` is
    reused (see the module docstring) unless `restart`; it is removed after the save unless
    `keep_work`.
    """
    from structvpr.data.layouts.utm import utm_from_name

    image_root, out = Path(image_root), Path(out)
    check_index_output(out)
    relative = [str(path.relative_to(image_root)) for path in image_paths]
    keys = [image_key(path, name) for path, name in zip(image_paths, relative, strict=True)]
    work = work_folder_for(out)
    work.mkdir(parents=True, exist_ok=True)
    chunks = DescriptorChunks(work, model.sha256, model.descriptor_dim)
    if restart:
        chunks.clear()
    described = describe_images(model, image_paths, chunks, keys, chunk_size, batch_size, on_bad_image, progress)
    if not described.image_numbers:
        raise ValueError(f"{image_root}: no readable map images left ({len(described.skipped)} skipped)")
    kept_paths = [image_paths[n] for n in described.image_numbers]
    metadata: dict[str, object] = {"paths": [relative[n] for n in described.image_numbers]}
    poses = [utm_from_name(path) for path in kept_paths]
    if all(pose is not None for pose in poses):
        metadata["poses"] = np.asarray(poses, dtype=np.float64)  # UTM east, north in metres
    options = dict(index_options or {})
    with status(f"building the {options.get('kind', 'flat')} index of {len(kept_paths)} descriptors", enabled=progress):
        index = PlaceIndex.build(described.descriptors, metadata=metadata, **options)
    index.info = {
        "model": model_name,
        "model_sha256": model.sha256,
        "image_root": str(image_root.resolve()),
        "descriptor_dim": int(model.descriptor_dim),
        "skipped_images": len(described.skipped),
    }
    with status(f"saving the index to {out}", enabled=progress):
        index.save(out)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return IndexBuildResult(index, described.skipped, described.reused, described.computed)
