"""Simulated segmenter failures for the synthetic town: a controlled teacher-noise experiment.

A real segmenter fails where the picture is hard (night, fog). `corrupt_town_labels` models the
worst such failure: for a fraction of the images of the chosen conditions, the label map is
replaced by the label map of an image of another place in the same split, so the seg-branch sees a
confident, wrong scene. The exact maps move to `<folder>_labels_exact/` (as with a network
segmenter), and `label_noise.json` at the town root lists every replaced image. The sample
weighting of the offline partition exists for exactly these samples (teacher wrong -> weight ~0).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from structvpr.data.label_maps import exact_label_path
from structvpr.data.layouts._common import read_csv_rows
from structvpr.data.training_set import METADATA_FILE
from structvpr.io_utils import atomic_write_bytes, atomic_write_text

NOISE_RECORD = "label_noise.json"


def _exact_map(label_path: Path) -> Path:
    """The exact map of `label_path`: its moved-aside copy when there is one."""
    exact = exact_label_path(label_path)
    return exact if exact.is_file() else label_path


def corrupt_town_labels(
    town_dir: str | Path, fraction: float, conditions: Sequence[str] = ("night", "fog"), seed: int = 0
) -> dict:
    """Replace the label maps of `fraction` of the town's images in `conditions` (every split) by
    the map of a random image of another place in the same split. Deterministic in `seed`.

    Returns (and writes to `<town>/label_noise.json`) {"fraction", "conditions", "seed",
    "replaced": {image path: source image path}}; a second call with the same settings returns the
    record and changes nothing. ValueError for a fraction outside [0, 1], a condition the town does
    not have, or a town already corrupted with other settings; DatasetError naming a missing or
    incomplete metadata.csv; FileNotFoundError naming a missing label map.
    """
    town = Path(town_dir)
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label noise fraction must be in [0, 1], got {fraction}")
    record_path = town / NOISE_RECORD
    if record_path.is_file():
        done = json.loads(record_path.read_text(encoding="utf-8"))
        if (done["fraction"], done["conditions"], done["seed"]) == (fraction, list(conditions), seed):
            return done
        raise ValueError(
            f"{record_path}: the labels of {town} were already corrupted with fraction {done['fraction']}, "
            f"conditions {done['conditions']}, seed {done['seed']}; render the town again for other settings"
        )
    rows = read_csv_rows(town / METADATA_FILE, ["path", "label_path", "split", "condition", "place_id"])
    known = sorted({row["condition"] for row in rows})
    unknown = sorted(set(conditions) - set(known))
    if unknown:
        raise ValueError(f"{town}: no images in condition(s) {unknown}; the town has {known}")
    by_split: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_split[row["split"]].append(row)
    rng = np.random.default_rng(seed)
    replaced: dict[str, str] = {}
    for split in sorted(by_split):
        split_rows = by_split[split]
        candidates = [row for row in split_rows if row["condition"] in conditions]
        count = round(fraction * len(candidates))
        chosen: list[int] = sorted(int(i) for i in rng.choice(len(candidates), size=count, replace=False))
        for index in chosen:
            target = candidates[index]
            others = [row for row in split_rows if row["place_id"] != target["place_id"]]
            if not others:
                raise ValueError(f"{town}: split {split!r} has one place, so no other place to take a label map from")
            source = others[int(rng.integers(len(others)))]
            replaced[target["path"]] = source["path"]
    label_of = {row["path"]: row["label_path"] for row in rows}
    # Read every source before writing any map: a source may itself be replaced, and must stay exact
    # (also when an interrupted call already moved some exact maps aside).
    sources = {label_of[image]: _exact_map(town / label_of[source]).read_bytes() for image, source in replaced.items()}
    for path, data in sources.items():
        label = town / path
        exact = exact_label_path(label)
        if not exact.is_file():
            exact.parent.mkdir(parents=True, exist_ok=True)
            os.replace(label, exact)  # a rename: a hard-linked copy of the town keeps its exact map
        atomic_write_bytes(label, data)
    record = {"fraction": fraction, "conditions": list(conditions), "seed": seed, "replaced": replaced}
    atomic_write_text(record_path, json.dumps(record, indent=2))
    return record
