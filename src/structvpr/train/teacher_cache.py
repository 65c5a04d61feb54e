"""The teacher cache: frozen teacher outputs for every training image, read by Stage II.

Written once by the partition (`structvpr partition`), so Stage II never runs the teacher. Format v2
holds, aligned with the training items: the distillation targets (the descriptor named by
`structvpr.distill_target`, the one the partition ranked with), the place label of every image (the
contrastive bank's positives), the teacher's label descriptor and label units, and the partition
weights. A v1 cache (global half only) is refused with advice to rebuild it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from structvpr.io_utils import atomic_write
from structvpr.train.partition_file import PartitionFileError

TEACHER_CACHE_FORMAT = "structvpr-teacher-cache-v2"


class TeacherCacheError(PartitionFileError):
    """A teacher cache is missing, incomplete, of an old format, or does not match the training set."""


@dataclass
class TeacherCache:
    """Teacher outputs per training image. targets float32 [N, Dt] (unit norm); places int64 [N];
    label_descriptors float16 [N, Dl], units float16 [N, U, d] and unit_presence bool [N, U] (None for
    a teacher without label features); weights float32 [N]. Arrays may be read-only memory maps."""

    directory: Path
    sample_paths: list[str]
    targets: np.ndarray
    places: np.ndarray
    label_descriptors: np.ndarray | None
    units: np.ndarray | None
    unit_presence: np.ndarray | None
    weights: np.ndarray
    metadata: dict

    @property
    def target_dim(self) -> int:
        """Width of the distillation target."""
        return int(self.targets.shape[1])

    @property
    def target_name(self) -> str:
        """Which teacher descriptor the targets are: 'combined' or 'global'."""
        return str(self.metadata.get("target", "combined"))

    @property
    def unit_dim(self) -> int | None:
        """Width of one label unit (None without label features)."""
        return None if self.units is None else int(self.units.shape[2])

    @property
    def label_dim(self) -> int | None:
        """Width of the teacher's label descriptor (None without label features)."""
        return None if self.label_descriptors is None else int(self.label_descriptors.shape[1])

    def lookup(self, indices: torch.Tensor, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Teacher outputs of training samples `indices` (int64 tensor [B]) as tensors on `device`."""
        rows = np.asarray(indices.detach().cpu().numpy(), dtype=np.int64)

        def tensor(array: np.ndarray, dtype) -> torch.Tensor:
            return torch.from_numpy(np.asarray(array[rows], dtype=dtype)).to(device)

        out = {
            "target": tensor(self.targets, np.float32),
            "place": tensor(self.places, np.int64),
            "weights": tensor(self.weights, np.float32),
        }
        if self.units is not None and self.unit_presence is not None and self.label_descriptors is not None:
            out["units"] = tensor(self.units, np.float32)
            out["unit_presence"] = tensor(self.unit_presence, bool)
            out["label_descriptor"] = tensor(self.label_descriptors, np.float32)
        return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def save_teacher_cache(
    directory: str | Path,
    sample_paths: Sequence[str],
    targets: np.ndarray,
    places: np.ndarray,
    weights: np.ndarray,
    metadata: dict,
    label_descriptors: np.ndarray | None = None,
    units: np.ndarray | None = None,
    unit_presence: np.ndarray | None = None,
) -> None:
    """Write the cache as .npy files + `cache.json`, each atomically; cache.json last marks it complete.

    metadata should name the target ('target': 'combined' | 'global').
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Remove the old manifest first: until the new one is written, the folder reads as incomplete,
    # never as a complete cache that mixes old and new arrays.
    (directory / "cache.json").unlink(missing_ok=True)
    _save_npy(directory / "targets.npy", np.asarray(targets, dtype=np.float32))
    _save_npy(directory / "places.npy", np.asarray(places, dtype=np.int64))
    _save_npy(directory / "weights.npy", np.asarray(weights, dtype=np.float32))
    has_labels = units is not None and unit_presence is not None and label_descriptors is not None
    if has_labels:
        _save_npy(directory / "label_descriptors.npy", np.asarray(label_descriptors, dtype=np.float16))
        _save_npy(directory / "units.npy", np.asarray(units, dtype=np.float16))
        _save_npy(directory / "unit_presence.npy", np.asarray(unit_presence, dtype=bool))
    manifest = {
        "format": TEACHER_CACHE_FORMAT,
        "count": len(sample_paths),
        "has_label_features": has_labels,
        "sample_paths": [str(p) for p in sample_paths],
        **metadata,
    }
    with atomic_write(directory / "cache.json", "w") as handle:
        json.dump(manifest, handle)


def load_teacher_cache(directory: str | Path) -> TeacherCache:
    """Open a cache written by save_teacher_cache (arrays memory-mapped, read-only).

    Raises TeacherCacheError naming the folder: missing/incomplete, old format (with advice), or
    arrays that do not match the sample list.
    """
    directory = Path(directory)
    manifest_path = directory / "cache.json"
    if not manifest_path.is_file():
        raise TeacherCacheError(
            f"{manifest_path}: teacher cache is missing or incomplete (run `structvpr partition` first)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TeacherCacheError(f"{manifest_path}: unreadable teacher cache manifest ({error})") from error
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != TEACHER_CACHE_FORMAT:
        raise TeacherCacheError(
            f"{directory}: teacher cache format {found!r}, this structvpr reads {TEACHER_CACHE_FORMAT} "
            "(v1 cached only the teacher's global half); run `structvpr partition` again to rebuild it"
        )
    try:

        def load(name: str) -> np.ndarray:
            return np.load(directory / name, mmap_mode="r", allow_pickle=False)

        has_labels = bool(manifest["has_label_features"])
        cache = TeacherCache(
            directory=directory,
            sample_paths=list(manifest.pop("sample_paths")),
            targets=load("targets.npy"),
            places=load("places.npy"),
            label_descriptors=load("label_descriptors.npy") if has_labels else None,
            units=load("units.npy") if has_labels else None,
            unit_presence=load("unit_presence.npy") if has_labels else None,
            weights=load("weights.npy"),
            metadata=manifest,
        )
    except (OSError, ValueError, KeyError) as error:
        raise TeacherCacheError(f"{directory}: unreadable teacher cache ({error})") from error
    count = len(cache.sample_paths)
    if any(len(array) != count for array in (cache.targets, cache.places, cache.weights)):
        raise TeacherCacheError(f"{directory}: teacher cache arrays do not match its {count} samples")
    return cache
