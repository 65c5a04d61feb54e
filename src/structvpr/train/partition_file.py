"""The partition file (`partition.npz`): ranks, groups and weights of every training sample, and its plot.

One .npz without pickles (metadata as a JSON string), written atomically; `load_partition` checks
the format tag and that every array has one row per sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from structvpr.io_utils import atomic_write
from structvpr.train.partition import GROUP_NAMES

PARTITION_FORMAT = "structvpr-partition-v1"


class PartitionFileError(ValueError):
    """A partition file (or teacher cache) is missing, malformed or does not match the training set."""


@dataclass
class Partition:
    """Everything the partition file holds. Arrays are aligned with `sample_paths` (training order)."""

    sample_paths: list[str]
    teacher_rank: np.ndarray
    student_rank: np.ndarray
    groups: np.ndarray
    weights: np.ndarray
    metadata: dict = field(default_factory=dict)

    def histogram(self) -> dict[str, int]:
        """Number of samples per group name."""
        counts = np.bincount(self.groups.astype(np.int64), minlength=5)
        return {name: int(counts[index]) for index, name in enumerate(GROUP_NAMES)}

    def histogram_text(self) -> str:
        """Printable group histogram with counts and percentages."""
        total = max(len(self.groups), 1)
        lines = [f"partition of {len(self.groups)} training samples (k = {self.metadata.get('k', '?')}):"]
        for name, count in self.histogram().items():
            lines.append(f"  {name:<34} {count:>7}  ({100.0 * count / total:5.1f} %)")
        return "\n".join(lines)


def save_partition(path: str | Path, partition: Partition) -> None:
    """Write the partition as one .npz (no pickle; metadata as a JSON string), atomically."""
    metadata = {"format": PARTITION_FORMAT, **partition.metadata}
    with atomic_write(path, "wb") as handle:
        np.savez(
            handle,
            sample_paths=np.asarray(partition.sample_paths, dtype=str),
            teacher_rank=partition.teacher_rank.astype(np.int64),
            student_rank=partition.student_rank.astype(np.int64),
            groups=partition.groups.astype(np.int8),
            weights=partition.weights.astype(np.float32),
            metadata=np.asarray(json.dumps(metadata, sort_keys=True)),
        )


def load_partition(path: str | Path) -> Partition:
    """Read a partition file written by save_partition; PartitionFileError names the file and problem."""
    path = Path(path)
    if not path.is_file():
        raise PartitionFileError(f"{path}: partition file does not exist (run `structvpr partition`)")
    try:
        with np.load(path, allow_pickle=False) as data:
            metadata = json.loads(str(data["metadata"]))
            partition = Partition(
                sample_paths=[str(p) for p in data["sample_paths"]],
                teacher_rank=data["teacher_rank"],
                student_rank=data["student_rank"],
                groups=data["groups"],
                weights=data["weights"],
                metadata=metadata,
            )
    except (OSError, KeyError, ValueError) as error:
        raise PartitionFileError(f"{path}: not a structvpr partition file ({error})") from error
    if metadata.get("format") != PARTITION_FORMAT:
        raise PartitionFileError(f"{path}: format {metadata.get('format')!r}, expected {PARTITION_FORMAT}")
    sizes = {
        len(partition.sample_paths),
        len(partition.teacher_rank),
        len(partition.student_rank),
        len(partition.groups),
        len(partition.weights),
    }
    if len(sizes) != 1:
        raise PartitionFileError(f"{path}: arrays have different lengths {sorted(sizes)}")
    return partition


def save_histogram_plot(partition: Partition, path: str | Path) -> None:
    """Bar plot of the group histogram as PNG (matplotlib, Agg backend), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    counts = partition.histogram()
    labels = ["none", "G1", "G2", "G3", "G4"]
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.bar(labels, list(counts.values()), color=["grey", "tab:green", "tab:blue", "tab:orange", "tab:red"])
    axis.set_ylabel("training samples")
    axis.set_title(f"StructVPR++ partition (k = {partition.metadata.get('k', '?')})")
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
