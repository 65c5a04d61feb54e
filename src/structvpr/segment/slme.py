"""SLME (segmentation label map encoding): merged label maps -> seg-branch input and masks A_l.

Everything is plain tensor arithmetic, so it runs on whatever device the input lives on (CPU in
DataLoader workers, or GPU inside the training step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from structvpr.segment.classes import IGNORE_ID


def resize_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest resize of integer ids: [B, H, W] -> long [B, h, w] (never interpolates ids)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    # "nearest-exact" samples pixel centres, so down-scaling by 2 picks the same pixel in every cell.
    resized = F.interpolate(labels[:, None].float(), size=tuple(int(s) for s in size), mode="nearest-exact")
    return resized[:, 0].round().long()


def boundary_map(labels: torch.Tensor) -> torch.Tensor:
    """float [B, h, w]: 1 where a pixel's id differs from its right or lower neighbour (both sides marked)."""
    edge = torch.zeros_like(labels, dtype=torch.bool)
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    vertical = labels[:, 1:, :] != labels[:, :-1, :]
    edge[:, :, 1:] |= horizontal
    edge[:, :, :-1] |= horizontal
    edge[:, 1:, :] |= vertical
    edge[:, :-1, :] |= vertical
    return edge.float()


def slme_one_hot(
    merged: torch.Tensor, num_classes: int, size: Sequence[int] | None = None, boundary: bool = False
) -> torch.Tensor:
    """Merged label map -> one-hot seg-branch input.

    merged: uint8/long [B, H, W] group ids 0..K-1, 255 = ignore (a single map [H, W] is accepted too).
    size: (h, w) output size (nearest resize of ids), default the input size.
    Returns float32 [B, K, h, w] (or [B, K + 1, h, w] with `boundary`): exactly one 1 per labelled
    pixel, all zeros at ignore; the optional last channel marks class boundaries.
    Raises ValueError for ids >= K other than 255.
    """
    if merged.dim() == 2:
        merged = merged[None]
    if merged.dim() != 3:
        raise ValueError(f"merged label map must be [B, H, W], got shape {tuple(merged.shape)}")
    labels = resize_labels(merged, size if size is not None else merged.shape[-2:])
    labelled = labels != IGNORE_ID
    if bool(((labels < 0) | ((labels >= num_classes) & labelled)).any()):
        bad = sorted(set(labels[labelled & ((labels < 0) | (labels >= num_classes))].unique().tolist()))
        raise ValueError(f"merged label map holds ids {bad} outside 0..{num_classes - 1} (and 255 = ignore)")
    one_hot = F.one_hot(torch.where(labelled, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    one_hot = one_hot * labelled[:, None].float()
    if boundary:
        one_hot = torch.cat([one_hot, boundary_map(labels)[:, None]], dim=1)
    return one_hot


def level_masks(one_hot: torch.Tensor, sizes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """Masks A_l: area fraction of every class in every cell of each level's feature map.

    one_hot: float [B, K, H, W] from `slme_one_hot` (drop a boundary channel first).
    sizes: [(h_l, w_l), ...] feature-map sizes, e.g. input size / (4, 8, 16, 32).
    Returns [[B, K, h_l, w_l], ...] (adaptive average pooling); per cell the K values sum to the
    fraction of the cell that is labelled (1 where nothing is ignored).
    """
    return [F.adaptive_avg_pool2d(one_hot, (int(h), int(w))) for h, w in sizes]


def teacher_input(label_maps: torch.Tensor, merge_table, in_channels: int, size: Sequence[int]) -> torch.Tensor:
    """The one label-map -> teacher-input encoder (training, partition, pipeline and demo use it).

    label_maps: trainIds uint8 [B, H, W]; merge_table: a segment.classes.MergeTable with K groups;
    in_channels: the teacher's input channels, K, or K + 1 when it was built with a boundary channel;
    size: the teacher's (h, w). Returns float32 [B, in_channels, h, w]. Raises ValueError for any
    other channel count.
    """
    classes = merge_table.num_classes
    if in_channels not in (classes, classes + 1):
        raise ValueError(
            f"the teacher takes {in_channels} input channels but merge table {merge_table.name!r} has "
            f"K = {classes} classes (expected K, or K + 1 with a boundary channel)"
        )
    return slme_one_hot(merge_table.merge(label_maps), classes, size=size, boundary=in_channels == classes + 1)
