"""Resumable label-map cache: every image gets a `<folder>_labels/<stem>.png` of Cityscapes trainIds.

Images are decoded and resized in DataLoader workers while the network runs; PNGs are encoded and
written (atomically) by a small thread pool, so decoding and writing overlap with compute. Label maps
are stored at the image's original size (nearest up-sampling of the prediction). A finished, valid
PNG (right size, ids in 0..18 or 255) is never recomputed, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from structvpr.data.images import BadImageError, load_rgb
from structvpr.data.label_maps import LabelMapError, label_path_for, read_label_map, write_label_map
from structvpr.segment.classes import CITYSCAPES_CLASSES, IGNORE_ID

if TYPE_CHECKING:
    from structvpr.segment.segmenter import Segmenter

EXIF_ORIENTATION_TAG = 0x0112
SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF rotations by 90 degrees swap width and height


def image_size_hw(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image as `load_rgb` returns it (EXIF orientation applied), from the header only."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(EXIF_ORIENTATION_TAG) in SWAPPING_ORIENTATIONS:
                width, height = height, width
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(path, f"cannot read image header ({type(error).__name__}: {error})") from error
    return height, width


def class_histogram(labels: np.ndarray) -> np.ndarray:
    """int64 [256] pixel count per id."""
    return np.bincount(labels.ravel(), minlength=256).astype(np.int64)


@dataclass
class CacheSummary:
    """What a cache run did; `class_pixels` counts pixels per id over every finished label map."""

    total: int = 0
    written: int = 0
    already_done: int = 0
    bad_images: list[str] = field(default_factory=list)  # "<path>: <reason>"
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(256, dtype=np.int64))

    def format(self) -> str:
        """Multi-line report: counts, then each class's share of all pixels (ignore included)."""
        lines = [
            f"{self.total} images: {self.written} label maps written, {self.already_done} already "
            f"done, {len(self.bad_images)} bad images skipped"
        ]
        lines += [f"  bad: {reason}" for reason in self.bad_images]
        pixels = max(int(self.class_pixels.sum()), 1)
        lines.append("class frequencies (share of all pixels):")
        for class_id, name in enumerate(CITYSCAPES_CLASSES):
            lines.append(f"  {class_id:2d} {name:<14s} {100.0 * self.class_pixels[class_id] / pixels:6.2f}%")
        lines.append(f" 255 {'ignore':<14s} {100.0 * self.class_pixels[IGNORE_ID] / pixels:6.2f}%")
        return "\n".join(lines)


class _CacheItems(Dataset):
    """Per image: the histogram of its valid existing label map, or its decoded input tensor,
    or the reason it could not be decoded. Runs in DataLoader workers."""

    def __init__(self, image_paths: Sequence[Path], transform: Any) -> None:
        self.image_paths = list(image_paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.image_paths[index]
        label_path = label_path_for(path)
        try:
            if label_path.is_file():
                with contextlib.suppress(LabelMapError):
                    labels = read_label_map(label_path, expected_hw=image_size_hw(path))
                    return {"index": index, "status": "done", "hist": class_histogram(labels)}
            image = load_rgb(path)
        except BadImageError as error:
            return {"index": index, "status": "bad", "reason": error.reason, "message": str(error)}
        return {"index": index, "status": "todo", "image": self.transform(image), "hw": (image.height, image.width)}


def _collate(items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], torch.Tensor | None]:
    todo = [item for item in items if item["status"] == "todo"]
    batch = torch.stack([item.pop("image") for item in todo]) if todo else None
    return items, batch


def _worker_init(_: int) -> None:
    # Workers only decode and resize; one thread each leaves the cores to the network.
    torch.set_num_threads(1)


def _save(path: Path, labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if labels.shape != hw:
        labels = np.asarray(Image.fromarray(labels).resize((hw[1], hw[0]), Image.Resampling.NEAREST))
    write_label_map(path, labels)
    return class_histogram(labels)


def remove_stale_temporaries(label_dirs: set[Path]) -> int:
    """Delete temporary files left by a killed run (`.<name>.png.*.tmp`); returns how many."""
    removed = 0
    for folder in label_dirs:
        if folder.is_dir():
            for stale in folder.glob(".*.png.*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
                    removed += 1
    return removed


def build_label_cache(
    image_paths: Sequence[str | Path],
    segmenter: Segmenter,
    *,
    batch_size: int = 8,
    num_workers: int = 2,
    on_bad_image: Literal["error", "skip"] = "error",
    progress: bool = True,
    writer_threads: int = 2,
    compute_threads: int | None = None,
) -> CacheSummary:
    """Write `label_path_for(image)` for every image that lacks a valid one.

    Images are resized to `segmenter.input_size`; predictions are up-sampled (nearest) back to each
    image's original size. `on_bad_image="error"` raises BadImageError at the first undecodable image;
    `"skip"` reports it by path (stderr) and counts it in the summary. `compute_threads` sets torch's
    intra-op threads for the run (restored afterwards); see `default_compute_threads`.
    """
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
    if segmenter.name == "precomputed":
        raise ValueError("the precomputed segmenter reads existing label maps; choose a network to build them")
    paths = [Path(p) for p in dict.fromkeys(Path(p) for p in image_paths)]  # de-duplicated, ordered
    remove_stale_temporaries({label_path_for(p).parent for p in paths})
    summary = CacheSummary(total=len(paths))
    loader = DataLoader(
        _CacheItems(paths, segmenter.transform()),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        worker_init_fn=_worker_init if num_workers > 0 else None,
        persistent_workers=False,
    )
    previous_threads = torch.get_num_threads()
    if compute_threads is not None:
        torch.set_num_threads(max(1, compute_threads))
    try:
        return _run(loader, paths, segmenter, summary, on_bad_image, batch_size, writer_threads, progress)
    finally:
        torch.set_num_threads(previous_threads)


def default_compute_threads(num_workers: int) -> int:
    """Torch threads that leave one core per decoding worker.

    More threads than free cores is far worse than too few: every small op of ESPNetv2 ends in a
    barrier that waits for a descheduled thread (measured on 2 busy cores: 2.9 s/image with 2
    threads vs 0.024 s with 1).
    """
    return max(1, (os.cpu_count() or 1) - num_workers)


def _run(
    loader: DataLoader,
    paths: list[Path],
    segmenter: Segmenter,
    summary: CacheSummary,
    on_bad_image: str,
    batch_size: int,
    writer_threads: int,
    progress: bool,
) -> CacheSummary:
    pending: list[Future] = []
    with (
        ThreadPoolExecutor(max_workers=writer_threads) as writers,
        tqdm(total=len(paths), desc="segment", unit="img", disable=not progress, file=sys.stderr) as bar,
    ):
        for items, batch in loader:
            for item in items:
                if item["status"] == "done":
                    summary.already_done += 1
                    summary.class_pixels += item["hist"]
                elif item["status"] == "bad":
                    if on_bad_image == "error":
                        raise BadImageError(
                            paths[item["index"]], item["reason"] + " (use --on-bad-image skip to skip such images)"
                        )
                    summary.bad_images.append(item["message"])
                    tqdm.write(f"skipping bad image {item['message']}", file=sys.stderr)
            if batch is not None:
                labels = segmenter.segment(batch).numpy()
                todo = [item for item in items if item["status"] == "todo"]
                for item, label in zip(todo, labels, strict=False):
                    pending.append(
                        writers.submit(_save, label_path_for(paths[item["index"]]), label, tuple(item["hw"]))
                    )
            # keep at most a few batches of PNGs in flight so memory stays bounded
            while len(pending) > 2 * batch_size:
                summary.class_pixels += pending.pop(0).result()
                summary.written += 1
            bar.update(len(items))
        for future in pending:
            summary.class_pixels += future.result()
            summary.written += 1
    return summary
