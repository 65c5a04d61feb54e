"""Running the partition: both frozen Stage I models over the training set -> partition + teacher cache.

The teacher is ranked with the descriptor Stage II distils (`structvpr.distill_target`: the combined
normalise([g ; l]) by default, or the global half g), so the groups say where *that* target is right.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from structvpr.config import Config
from structvpr.dataclass_dict import to_plain_dict
from structvpr.train.partition import (
    assign_groups,
    best_positive_ranks,
    group_weights,
    same_place_positives,
    smooth_weights,
)
from structvpr.train.partition_file import Partition, save_histogram_plot, save_partition
from structvpr.train.teacher_cache import save_teacher_cache


@dataclass
class PartitionOutputs:
    """Where `run_partition` wrote its results."""

    partition_file: Path
    plot_file: Path
    cache_dir: Path
    partition: Partition


def partition_dir(config: Config) -> Path:
    """`<train.output_dir>/partition`."""
    return Path(config.train.output_dir) / "partition"


def load_teacher(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """The frozen Stage I seg-branch: a SegBranch file, or a plain K-channel VPRNet model file (then
    the teacher has no label features and label distillation is skipped). Returns (model, metadata)."""
    from structvpr.model.branches import SEG_BRANCH_FORMAT, load_seg_branch
    from structvpr.model.model_file import load_model_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: teacher (Stage I seg-branch) model file does not exist")
    content = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(content, dict) and content.get("format") == SEG_BRANCH_FORMAT:
        model, metadata = load_seg_branch(path)
    else:
        model, metadata = load_model_file(path)
    return model.to(device).eval(), metadata


@dataclass
class TeacherOutputs:
    """Teacher outputs of a set of label maps: ranked/distilled targets, and label features (or None)."""

    targets: np.ndarray
    label_descriptors: np.ndarray | None
    units: np.ndarray | None
    unit_presence: np.ndarray | None


def teacher_outputs(teacher: torch.nn.Module, label_batches, merge_table, target: str, device: str) -> TeacherOutputs:
    """Run the teacher on label-map batches (an iterable of trainId tensors [B, H, W]).

    target 'combined' = the teacher's retrieval descriptor normalise([g ; l]); 'global' = g only. A
    plain VPRNet teacher (no label features) gives its descriptor for both.
    """
    from structvpr.segment.slme import teacher_input

    has_labels = hasattr(teacher, "label_head")
    targets, label_descriptors, units, presence = [], [], [], []
    with torch.no_grad():
        for label_maps in label_batches:
            inputs = teacher_input(
                label_maps.to(device), merge_table, teacher.config.in_channels, teacher.config.image_size
            )
            if has_labels:
                outputs = teacher.forward_outputs(inputs)
                chosen = outputs.descriptor if target == "combined" else outputs.global_descriptor
                targets.append(chosen.float().cpu())
                label_descriptors.append(outputs.labels.descriptor.half().cpu())
                units.append(outputs.labels.units.half().cpu())
                presence.append(outputs.labels.unit_presence.cpu())
            else:
                targets.append(teacher(inputs).float().cpu())
    if not has_labels:
        return TeacherOutputs(torch.cat(targets).numpy(), None, None, None)
    return TeacherOutputs(
        torch.cat(targets).numpy(),
        torch.cat(label_descriptors).numpy(),
        torch.cat(units).numpy(),
        torch.cat(presence).numpy(),
    )


def run_partition(
    config: Config,
    teacher_path: str | Path | None = None,
    student_path: str | Path | None = None,
    output_dir: str | Path | None = None,
    device: str = "cpu",
) -> PartitionOutputs:
    """Rank, group and weight every training image with the frozen teacher and student; cache the teacher.

    Defaults: teacher `<output_dir>/stage1-seg/model.pt`, student `<output_dir>/stage1-rgb/model.pt`,
    results in `<output_dir>/partition/` (partition.npz, groups.png, teacher_cache/).
    """
    from torch.utils.data import DataLoader

    from structvpr.evaluate.descriptors import describe_batches
    from structvpr.io_utils import sha256_of_file
    from structvpr.model.model_file import load_model_file
    from structvpr.segment.classes import load_merge_table
    from structvpr.train.datamodule import Stage2DataModule

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
    batches = list(loader)
    structvpr = config.structvpr
    target = structvpr.distill_target
    taught = teacher_outputs(teacher, (batch["label_map"] for batch in batches), merge_table, target, device)
    student_descriptors = describe_batches(
        student, (batch["image"] for batch in batches), len(training_set), device=device
    )
    places = np.asarray(training_set.places, dtype=np.int64)
    search_depth = int(structvpr.partition_search_depth)
    positives = same_place_positives(places)
    teacher_rank = best_positive_ranks(taught.targets, positives, search_depth)
    student_rank = best_positive_ranks(student_descriptors, positives, search_depth)
    k = int(structvpr.group_threshold_k)
    groups = assign_groups(teacher_rank, student_rank, k)
    if structvpr.weight_function == "smooth":
        weights = smooth_weights(teacher_rank, student_rank, float(structvpr.smooth_temperature))
    elif structvpr.weight_function == "groups":
        weights = group_weights(groups, structvpr.group_weights)
    else:
        raise ValueError(f"structvpr.weight_function {structvpr.weight_function!r} is not 'groups' or 'smooth'")
    hashes = {"teacher_sha256": sha256_of_file(teacher_path), "student_sha256": sha256_of_file(student_path)}
    metadata = {
        "k": k,
        "weight_function": structvpr.weight_function,
        "group_weights": list(structvpr.group_weights),
        "search_depth": search_depth,
        "ranked_with": target,
        "train_dataset": datamodule.train_description,
        "teacher_path": str(teacher_path),
        "student_path": str(student_path),
        **hashes,
    }
    sample_paths = [str(p) for p in training_set.paths]
    partition = Partition(sample_paths, teacher_rank, student_rank, groups, weights, metadata)
    save_partition(out_dir / "partition.npz", partition)
    save_histogram_plot(partition, out_dir / "groups.png")
    label_config = getattr(teacher, "label_config", None)
    save_teacher_cache(
        out_dir / "teacher_cache",
        sample_paths,
        taught.targets,
        places,
        weights,
        {
            **hashes,
            "target": target,
            "merge_table": merge_table.name,
            "label_config": None if label_config is None else to_plain_dict(label_config),
        },
        label_descriptors=taught.label_descriptors,
        units=taught.units,
        unit_presence=taught.unit_presence,
    )
    print(partition.histogram_text(), flush=True)
    return PartitionOutputs(out_dir / "partition.npz", out_dir / "groups.png", out_dir / "teacher_cache", partition)
