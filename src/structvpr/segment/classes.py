"""Merge tables that group the Cityscapes trainIds (data/cityscapes.py) into K classes for SLME.

A merge table maps each of the 19 Cityscapes trainIds to one group; 255 (ignore) stays 255.
Built-in tables: `cityscapes-19` (identity), `cityscapes-7` (the Cityscapes categories) and
`structural-6` (default, see docs/segmentation.md). User tables come from a YAML file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import torch
import yaml

from structvpr.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    DYNAMIC_CLASS_IDS,
    IGNORE_COLOR,
    IGNORE_ID,
    NUM_CITYSCAPES_CLASSES,
)

__all__ = [
    "BUILTIN_TABLES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "DEFAULT_TABLE",
    "DYNAMIC_CLASS_IDS",
    "IGNORE_COLOR",
    "IGNORE_ID",
    "NUM_CITYSCAPES_CLASSES",
    "LabelMapValueError",
    "MergeTable",
    "MergeTableError",
    "load_merge_table",
    "make_merge_table",
]

BUILTIN_TABLES: dict[str, dict[str, list[str]]] = {
    "cityscapes-19": {name: [name] for name in CITYSCAPES_CLASSES},
    "cityscapes-7": {
        "flat": ["road", "sidewalk"],
        "construction": ["building", "wall", "fence"],
        "object": ["pole", "traffic light", "traffic sign"],
        "nature": ["vegetation", "terrain"],
        "sky": ["sky"],
        "human": ["person", "rider"],
        "vehicle": ["car", "truck", "bus", "train", "motorcycle", "bicycle"],
    },
    "structural-6": {
        "ground": ["road", "sidewalk", "terrain"],
        "construction": ["building", "wall", "fence"],
        "object": ["pole", "traffic light", "traffic sign"],
        "vegetation": ["vegetation"],
        "sky": ["sky"],
        "dynamic": ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"],
    },
}
DEFAULT_TABLE = "structural-6"


class MergeTableError(ValueError):
    """A merge table is malformed; the message names its source and the problem."""


class LabelMapValueError(ValueError):
    """A label map holds ids that the merge table does not define."""


@dataclass(frozen=True)
class MergeTable:
    """Cityscapes trainIds -> K groups.

    `groups[k]` lists the trainIds of group k; `lookup` is uint8 [256] (trainId -> group, 255 -> 255,
    undefined ids -> 255 but flagged by `merge`); `dynamic_groups` are the indices of groups made only
    of dynamic classes (person, rider, vehicles), which label features exclude by default.
    """

    name: str
    group_names: tuple[str, ...]
    groups: tuple[tuple[int, ...], ...]
    lookup: np.ndarray = field(repr=False, compare=False)
    dynamic_groups: tuple[int, ...]

    @property
    def num_classes(self) -> int:
        """K, the number of merged groups."""
        return len(self.group_names)

    @property
    def colors(self) -> np.ndarray:
        """uint8 [K, 3]: each group drawn in the Cityscapes colour of its first class."""
        return np.array([CITYSCAPES_COLORS[ids[0]] for ids in self.groups], dtype=np.uint8)

    @overload
    def merge(self, label_map: np.ndarray, source: str | Path | None = None) -> np.ndarray: ...
    @overload
    def merge(self, label_map: torch.Tensor, source: str | Path | None = None) -> torch.Tensor: ...
    def merge(
        self, label_map: np.ndarray | torch.Tensor, source: str | Path | None = None
    ) -> np.ndarray | torch.Tensor:
        """uint8/int trainIds [..., H, W] (numpy or torch, any device) -> uint8 group ids, 255 kept.

        Raises LabelMapValueError (naming `source` when given) for ids that are neither a
        Cityscapes trainId (0..18) nor 255.
        """
        where = f"{source}: " if source is not None else ""
        if isinstance(label_map, torch.Tensor):
            ids = label_map.long()
            if ids.numel() and (ids.min() < 0 or ids.max() > IGNORE_ID):
                raise LabelMapValueError(f"{where}label ids outside 0..255")
            bad = (ids >= NUM_CITYSCAPES_CLASSES) & (ids != IGNORE_ID)
            if bool(bad.any()):
                raise LabelMapValueError(
                    f"{where}label map holds ids {sorted(set(ids[bad].unique().tolist()))} "
                    f"outside merge table '{self.name}' (valid: 0..18 and 255)"
                )
            return torch.as_tensor(self.lookup, device=ids.device)[ids]
        array_ids = np.asarray(label_map)
        if array_ids.size and (array_ids.min() < 0 or array_ids.max() > IGNORE_ID):
            raise LabelMapValueError(f"{where}label ids outside 0..255")
        bad = (array_ids >= NUM_CITYSCAPES_CLASSES) & (array_ids != IGNORE_ID)
        if bad.any():
            raise LabelMapValueError(
                f"{where}label map holds ids {sorted(np.unique(array_ids[bad]).tolist())} "
                f"outside merge table '{self.name}' (valid: 0..18 and 255)"
            )
        return self.lookup[array_ids.astype(np.intp, copy=False)]


def _class_id(entry: object, source: str) -> int:
    """A trainId (int) or a Cityscapes class name -> trainId; anything else is an error."""
    if isinstance(entry, bool):
        raise MergeTableError(f"{source}: {entry!r} is not a Cityscapes trainId or class name")
    if isinstance(entry, int):
        if not 0 <= entry < NUM_CITYSCAPES_CLASSES:
            raise MergeTableError(f"{source}: unknown Cityscapes trainId {entry} (valid: 0..18)")
        return entry
    if isinstance(entry, str):
        key = entry.strip().lower().replace("_", " ").replace("-", " ")
        if key in CITYSCAPES_CLASSES:
            return CITYSCAPES_CLASSES.index(key)
        raise MergeTableError(
            f"{source}: unknown Cityscapes class name {entry!r} (valid: {', '.join(CITYSCAPES_CLASSES)})"
        )
    raise MergeTableError(f"{source}: {entry!r} is not a Cityscapes trainId or class name")


def make_merge_table(name: str, groups: Mapping[str, Sequence[int | str]], source: str | None = None) -> MergeTable:
    """Build a MergeTable from `group name -> trainIds or class names`.

    Every trainId 0..18 must appear in exactly one group; otherwise MergeTableError naming `source`.
    """
    source = source or f"merge table '{name}'"
    if not isinstance(groups, Mapping) or not groups:
        raise MergeTableError(f"{source}: expected a mapping 'group name -> list of classes'")
    if len(groups) > IGNORE_ID:
        raise MergeTableError(f"{source}: at most 255 groups are supported")
    lookup = np.full(256, IGNORE_ID, dtype=np.uint8)
    owner: dict[int, str] = {}
    group_ids: list[tuple[int, ...]] = []
    for index, (group_name, members) in enumerate(groups.items()):
        if isinstance(members, (str, int)):
            members = [members]
        if not isinstance(members, Sequence) or not members:
            raise MergeTableError(f"{source}: group '{group_name}' must list at least one class")
        ids = tuple(_class_id(member, source) for member in members)
        for class_id in ids:
            if class_id in owner:
                raise MergeTableError(
                    f"{source}: class '{CITYSCAPES_CLASSES[class_id]}' ({class_id}) is in "
                    f"both '{owner[class_id]}' and '{group_name}'"
                )
            owner[class_id] = str(group_name)
            lookup[class_id] = index
        group_ids.append(ids)
    missing = [i for i in range(NUM_CITYSCAPES_CLASSES) if i not in owner]
    if missing:
        names = ", ".join(f"{CITYSCAPES_CLASSES[i]} ({i})" for i in missing)
        raise MergeTableError(f"{source}: every Cityscapes trainId must be in a group; missing {names}")
    dynamic = tuple(k for k, ids in enumerate(group_ids) if set(ids) <= DYNAMIC_CLASS_IDS)
    return MergeTable(
        name=name,
        group_names=tuple(str(g) for g in groups),
        groups=tuple(group_ids),
        lookup=lookup,
        dynamic_groups=dynamic,
    )


def load_merge_table(name_or_path: str | Path = DEFAULT_TABLE) -> MergeTable:
    """A built-in table by name, or a user table from a YAML file.

    YAML: either `{group: [classes...]}` or `{name: ..., groups: {group: [classes...]}}`; classes are
    trainIds or Cityscapes names (`traffic light` or `traffic_light`).
    """
    if str(name_or_path) in BUILTIN_TABLES:
        return make_merge_table(str(name_or_path), BUILTIN_TABLES[str(name_or_path)])
    path = Path(name_or_path)
    if not path.is_file():
        raise MergeTableError(
            f"{name_or_path}: not a built-in merge table ({', '.join(BUILTIN_TABLES)}) nor an existing YAML file"
        )
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise MergeTableError(f"{path}: cannot parse YAML ({error})") from error
    if isinstance(content, Mapping) and isinstance(content.get("groups"), Mapping):
        return make_merge_table(str(content.get("name", path.stem)), content["groups"], source=str(path))
    return make_merge_table(path.stem, content, source=str(path))
