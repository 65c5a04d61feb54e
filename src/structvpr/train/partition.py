"""Offline group partition of the training samples and their distillation weights (StructVPR++).

With both Stage I models frozen, every training image is a query against all other training
images; r_T and r_S are the 1-based ranks of its best true positive for teacher and student.
With threshold k a model is "right" when its rank <= k:

  G1 teacher right, student wrong -> the knowledge the student lacks       (weight 1.0)
  G2 both right                                                           (weight 0.5)
  G3 both wrong                                                           (weight 0.25)
  G4 teacher wrong, student right -> distilling would hurt                 (weight 0.0)

Group 0 marks samples without any positive in the training set (weight 0). Ranks beyond the search
depth are stored as depth + 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from structvpr.io_utils import atomic_write

GROUP_NAMES = (
    "no positive",
    "G1 teacher right, student wrong",
    "G2 both right",
    "G3 both wrong",
    "G4 teacher wrong, student right",
)
DEFAULT_GROUP_WEIGHTS = (1.0, 0.5, 0.25, 0.0)
PARTITION_FORMAT = "structvpr-partition-v1"


class PartitionFileError(ValueError):
    """A partition file is missing, malformed or does not match the training set."""


def best_positive_ranks(
    descriptors: np.ndarray, positives: Sequence[np.ndarray], search_depth: int = 100, batch_size: int = 4096
) -> np.ndarray:
    """1-based rank of each sample's best true positive among all other samples (FAISS, inner product).

    descriptors: float32 [N, D], L2-normalised; positives[i]: indices of i's positives (i itself is
    ignored). Returns int64 [N]: the rank, search_depth + 1 when no positive is in the top
    search_depth, and 0 when sample i has no positive at all.
    """
    descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
    count = len(descriptors)
    if len(positives) != count:
        raise ValueError(f"{len(positives)} positive lists for {count} descriptors")
    index = faiss.IndexFlatIP(descriptors.shape[1])
    index.add(descriptors)
    depth = min(search_depth + 1, count)  # +1: the query itself is in the index
    ranks = np.zeros(count, dtype=np.int64)
    for start in range(0, count, batch_size):
        _, neighbours = index.search(descriptors[start : start + batch_size], depth)
        for offset, row in enumerate(neighbours):
            query = start + offset
            positive_set = {int(p) for p in positives[query]} - {query}
            if not positive_set:
                continue
            others = [int(n) for n in row if n != query and n >= 0][:search_depth]
            hit = next((rank for rank, n in enumerate(others, 1) if n in positive_set), search_depth + 1)
            ranks[query] = hit
    return ranks


def assign_groups(teacher_rank: np.ndarray, student_rank: np.ndarray, k: int = 1) -> np.ndarray:
    """Groups 1..4 from ranks (see module docstring); 0 where a rank is 0 (no positive). int8 [N]."""
    teacher_rank, student_rank = np.asarray(teacher_rank), np.asarray(student_rank)
    teacher_right, student_right = teacher_rank <= k, student_rank <= k
    groups = np.select(
        [
            teacher_right & ~student_right,
            teacher_right & student_right,
            ~teacher_right & ~student_right,
            ~teacher_right & student_right,
        ],
        [1, 2, 3, 4],
    ).astype(np.int8)
    groups[(teacher_rank <= 0) | (student_rank <= 0)] = 0
    return groups


def group_weights(groups: np.ndarray, weights: Sequence[float] = DEFAULT_GROUP_WEIGHTS) -> np.ndarray:
    """Per-sample weights float32 [N] from the per-group constants (G1..G4); group 0 -> 0."""
    if len(weights) != 4:
        raise ValueError(f"need 4 group weights (G1..G4), got {list(weights)}")
    table = np.asarray([0.0, *weights], dtype=np.float32)
    return table[np.asarray(groups, dtype=np.int64)]


def smooth_weights(teacher_rank: np.ndarray, student_rank: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Smooth option: w = sigmoid((log r_S - log r_T) / temperature), float32 [N] in (0, 1).

    0.5 when both models rank the positive alike, -> 1 when the teacher is much better (G1-like),
    -> 0 when the student is much better (G4-like). Log ranks: going from rank 1 to 2 matters more
    than from 50 to 51. Samples without a positive (rank 0) get 0.
    """
    teacher_rank = np.asarray(teacher_rank, dtype=np.float64)
    student_rank = np.asarray(student_rank, dtype=np.float64)
    valid = (teacher_rank > 0) & (student_rank > 0)
    gap = np.log(np.maximum(student_rank, 1)) - np.log(np.maximum(teacher_rank, 1))
    weights = 1.0 / (1.0 + np.exp(-gap / temperature))
    return np.where(valid, weights, 0.0).astype(np.float32)


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


# ---------------------------------------------------------------------------------------------
# Running the partition on a training set with the two frozen Stage I models.
# ---------------------------------------------------------------------------------------------

TEACHER_CACHE_FORMAT = "structvpr-teacher-cache-v1"


@dataclass
class TeacherCache:
    """Frozen teacher outputs for every training image, read by Stage II instead of running the teacher.

    global_descriptors float32 [N, Dg]; units float16 [N, U, d] (None for a teacher without label
    features); unit_presence bool [N, U]; weights float32 [N] (from the partition). Arrays may be
    read-only memory maps.
    """

    directory: Path
    sample_paths: list[str]
    global_descriptors: np.ndarray
    units: np.ndarray | None
    unit_presence: np.ndarray | None
    weights: np.ndarray
    metadata: dict

    @property
    def global_dim(self) -> int:
        return int(self.global_descriptors.shape[1])

    @property
    def unit_dim(self) -> int | None:
        return None if self.units is None else int(self.units.shape[2])

    def lookup(self, indices, device) -> dict:
        """Teacher outputs of training samples `indices` (int64 tensor [B]) as tensors on `device`."""
        import torch

        rows = np.asarray(indices.detach().cpu().numpy(), dtype=np.int64)
        out = {
            "global": torch.from_numpy(np.asarray(self.global_descriptors[rows], dtype=np.float32)).to(device),
            "weights": torch.from_numpy(np.asarray(self.weights[rows], dtype=np.float32)).to(device),
        }
        if self.units is not None:
            out["units"] = torch.from_numpy(np.asarray(self.units[rows], dtype=np.float32)).to(device)
            out["unit_presence"] = torch.from_numpy(np.asarray(self.unit_presence[rows], dtype=bool)).to(device)
        return out


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def save_teacher_cache(
    directory: str | Path,
    sample_paths: Sequence[str],
    global_descriptors: np.ndarray,
    units: np.ndarray | None,
    unit_presence: np.ndarray | None,
    weights: np.ndarray,
    metadata: dict,
) -> None:
    """Write the cache as .npy files + `cache.json`, each atomically; cache.json last marks it complete."""
    directory = Path(directory)
    # Remove the old manifest first: until the new one is written, the folder reads as incomplete,
    # never as a complete cache that mixes old and new arrays.
    (directory / "cache.json").unlink(missing_ok=True)
    _save_npy(directory / "global_descriptors.npy", np.asarray(global_descriptors, dtype=np.float32))
    _save_npy(directory / "weights.npy", np.asarray(weights, dtype=np.float32))
    if units is not None:
        _save_npy(directory / "units.npy", np.asarray(units, dtype=np.float16))
        _save_npy(directory / "unit_presence.npy", np.asarray(unit_presence, dtype=bool))
    manifest = {
        "format": TEACHER_CACHE_FORMAT,
        "count": len(sample_paths),
        "has_units": units is not None,
        "sample_paths": [str(p) for p in sample_paths],
        **metadata,
    }
    with atomic_write(directory / "cache.json", "w") as handle:
        json.dump(manifest, handle)


def load_teacher_cache(directory: str | Path) -> TeacherCache:
    """Open a cache written by save_teacher_cache (arrays memory-mapped, read-only)."""
    directory = Path(directory)
    manifest_path = directory / "cache.json"
    if not manifest_path.is_file():
        raise PartitionFileError(
            f"{manifest_path}: teacher cache is missing or incomplete (run `structvpr partition` first)"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("format") != TEACHER_CACHE_FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {TEACHER_CACHE_FORMAT}")
        load = lambda name: np.load(directory / name, mmap_mode="r", allow_pickle=False)
        cache = TeacherCache(
            directory=directory,
            sample_paths=list(manifest.pop("sample_paths")),
            global_descriptors=load("global_descriptors.npy"),
            units=load("units.npy") if manifest["has_units"] else None,
            unit_presence=load("unit_presence.npy") if manifest["has_units"] else None,
            weights=load("weights.npy"),
            metadata=manifest,
        )
    except (OSError, ValueError, KeyError) as error:
        raise PartitionFileError(f"{directory}: unreadable teacher cache ({error})") from error
    if len(cache.global_descriptors) != len(cache.sample_paths) or len(cache.weights) != len(cache.sample_paths):
        raise PartitionFileError(
            f"{directory}: teacher cache arrays do not match its {len(cache.sample_paths)} samples"
        )
    return cache


def load_teacher(path: str | Path, device: str = "cpu"):
    """The frozen Stage I seg-branch: a SegBranch file, or a plain K-channel VPRNet model file (then
    the teacher has no label features and label distillation is skipped). Returns (model, metadata)."""
    import torch

    from structvpr.model.branches import SEG_BRANCH_FORMAT, load_seg_branch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: teacher (Stage I seg-branch) model file does not exist")
    content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, dict) and content.get("format") == SEG_BRANCH_FORMAT:
        model, metadata = load_seg_branch(path)
    else:
        from structvpr.model.model_file import load_model_file

        model, metadata = load_model_file(path)
    return model.to(device).eval(), metadata


@dataclass
class PartitionOutputs:
    """Where `run_partition` wrote its results."""

    partition_file: Path
    plot_file: Path
    cache_dir: Path
    partition: Partition


def partition_dir(config) -> Path:
    """`<train.output_dir>/partition`."""
    return Path(config.train.output_dir) / "partition"


def run_partition(
    config,
    teacher_path: str | Path | None = None,
    student_path: str | Path | None = None,
    output_dir: str | Path | None = None,
    device: str = "cpu",
) -> PartitionOutputs:
    """Rank, group and weight every training image with the frozen teacher and student; cache the teacher.

    Defaults: teacher `<output_dir>/stage1-seg/model.pt`, student `<output_dir>/stage1-rgb/model.pt`,
    results in `<output_dir>/partition/` (partition.npz, groups.png, teacher_cache/).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from structvpr.io_utils import sha256_of_file
    from structvpr.model.model_file import load_model_file
    from structvpr.segment.classes import load_merge_table
    from structvpr.segment.slme import slme_one_hot
    from structvpr.train.stage2 import Stage2DataModule

    root = Path(config.train.output_dir)
    teacher_path = Path(teacher_path or root / "stage1-seg" / "model.pt")
    student_path = Path(student_path or root / "stage1-rgb" / "model.pt")
    out_dir = Path(output_dir) if output_dir else partition_dir(config)
    teacher, _ = load_teacher(teacher_path, device)
    student, _ = load_model_file(student_path, map_location="cpu")
    student = student.to(device).eval()
    merge_table = load_merge_table(config.structvpr.merge_table)
    # The same training set, in the same order, as Stage II will use.
    datamodule = Stage2DataModule(config)
    datamodule.setup("fit")
    training_set = datamodule.train_set
    loader = DataLoader(
        training_set, batch_size=config.data.val_batch_size, shuffle=False, num_workers=config.data.num_workers
    )
    has_units = hasattr(teacher, "label_head")
    boundary = teacher.config.in_channels > merge_table.num_classes  # teacher trained with a boundary channel
    teacher_global, teacher_desc, student_desc, units, presence = [], [], [], [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc="partition: teacher + student descriptors", leave=False):
            merged = merge_table.merge(batch["label_map"].to(device))
            one_hot = slme_one_hot(merged, merge_table.num_classes, size=teacher.config.image_size, boundary=boundary)
            if has_units:
                outputs = teacher.forward_outputs(one_hot)
                teacher_global.append(outputs.global_descriptor.cpu())
                teacher_desc.append(outputs.descriptor.cpu())
                units.append(outputs.labels.units.half().cpu())
                presence.append(outputs.labels.unit_presence.cpu())
            else:
                descriptor = teacher(one_hot).cpu()
                teacher_global.append(descriptor)
                teacher_desc.append(descriptor)
            student_desc.append(student(batch["image"].to(device)).cpu())
    paths, place_labels, description = training_set.paths, training_set.places, datamodule.train_description
    structvpr = config.structvpr
    search_depth = int(getattr(structvpr, "partition_search_depth", 100))
    positives = _same_place_positives(place_labels)
    teacher_rank = best_positive_ranks(torch.cat(teacher_desc).numpy(), positives, search_depth)
    student_rank = best_positive_ranks(torch.cat(student_desc).numpy(), positives, search_depth)
    k = int(structvpr.group_threshold_k)
    groups = assign_groups(teacher_rank, student_rank, k)
    weight_function = getattr(structvpr, "weight_function", "groups")
    if weight_function == "smooth":
        weights = smooth_weights(teacher_rank, student_rank, float(getattr(structvpr, "smooth_temperature", 1.0)))
    elif weight_function == "groups":
        weights = group_weights(groups, structvpr.group_weights)
    else:
        raise ValueError(f"structvpr.weight_function {weight_function!r} is not 'groups' or 'smooth'")
    hashes = {"teacher_sha256": sha256_of_file(teacher_path), "student_sha256": sha256_of_file(student_path)}
    metadata = {
        "k": k,
        "weight_function": weight_function,
        "group_weights": list(structvpr.group_weights),
        "search_depth": search_depth,
        "train_dataset": description,
        "teacher_path": str(teacher_path),
        "student_path": str(student_path),
        **hashes,
    }
    partition = Partition([str(p) for p in paths], teacher_rank, student_rank, groups, weights, metadata)
    save_partition(out_dir / "partition.npz", partition)
    save_histogram_plot(partition, out_dir / "groups.png")
    save_teacher_cache(
        out_dir / "teacher_cache",
        partition.sample_paths,
        torch.cat(teacher_global).numpy(),
        torch.cat(units).numpy() if has_units else None,
        torch.cat(presence).numpy() if has_units else None,
        weights,
        {**hashes, "merge_table": merge_table.name, "label_config": _label_config_dict(teacher) if has_units else None},
    )
    print(partition.histogram_text(), flush=True)
    return PartitionOutputs(out_dir / "partition.npz", out_dir / "groups.png", out_dir / "teacher_cache", partition)


def _label_config_dict(teacher) -> dict:
    from dataclasses import asdict

    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in asdict(teacher.label_config).items()
    }


def _same_place_positives(place_labels: np.ndarray) -> list[np.ndarray]:
    """Indices of the other images of each image's place."""
    place_labels = np.asarray(place_labels)
    order = np.argsort(place_labels, kind="stable")
    boundaries = np.flatnonzero(np.diff(place_labels[order])) + 1
    members = {int(place_labels[group[0]]): group for group in np.split(order, boundaries)}
    return [members[int(label)][members[int(label)] != index] for index, label in enumerate(place_labels)]
