"""Tests of the simulated segmenter failure: which maps are replaced, by what, and what is kept."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from structvpr.data.label_maps import read_label_map
from structvpr.data.label_noise import NOISE_RECORD, corrupt_town_labels
from structvpr.data.synth import generate_town


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noise") / "town"
    generate_town(out, 12, seed=2, image_size=(48, 64), progress=False)
    return out


@pytest.fixture
def town(rendered: Path, tmp_path: Path) -> Path:
    """A hard-linked copy, as bench_method's forks make: corrupting it must not touch `rendered`."""
    copy = tmp_path / "town"
    shutil.copytree(rendered, copy, copy_function=os.link)
    return copy


def _rows(town: Path) -> dict[str, dict]:
    with open(town / "metadata.csv", newline="", encoding="utf-8") as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_replaces_half_of_the_night_and_fog_maps_with_another_places(town: Path, rendered: Path) -> None:
    rows = _rows(town)
    record = corrupt_town_labels(town, 0.5, seed=1)
    replaced = record["replaced"]
    for split in ("train", "val", "test"):
        hard = [p for p, r in rows.items() if r["split"] == split and r["condition"] in ("night", "fog")]
        assert sum(p in replaced for p in hard) == round(0.5 * len(hard))
    for image, source in replaced.items():
        target_row, source_row = rows[image], rows[source]
        assert target_row["condition"] in ("night", "fog") and target_row["split"] == source_row["split"]
        assert target_row["place_id"] != source_row["place_id"]
        label, source_label = town / target_row["label_path"], rendered / source_row["label_path"]
        assert np.array_equal(read_label_map(label), read_label_map(source_label))
        exact = label.parent.with_name(label.parent.name + "_exact") / label.name
        assert np.array_equal(read_label_map(exact), read_label_map(rendered / target_row["label_path"]))
    untouched = [r for p, r in rows.items() if p not in replaced]
    assert any(r["condition"] in ("night", "fog") for r in untouched)
    for row in untouched:
        assert (town / row["label_path"]).read_bytes() == (rendered / row["label_path"]).read_bytes()
    # The original town keeps every exact map (the copy's maps were renamed, never written through).
    assert not (rendered / NOISE_RECORD).exists()
    assert json.loads((town / NOISE_RECORD).read_text())["replaced"] == replaced


def test_same_settings_again_change_nothing_and_other_settings_are_refused(town: Path) -> None:
    first = corrupt_town_labels(town, 0.5, seed=1)
    before = {p: p.read_bytes() for p in town.rglob("*.png")}
    assert corrupt_town_labels(town, 0.5, seed=1) == first
    assert {p: p.read_bytes() for p in town.rglob("*.png")} == before
    with pytest.raises(ValueError, match="already corrupted with fraction 0.5"):
        corrupt_town_labels(town, 0.25, seed=1)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt_town_labels(town, 1.5)


def test_a_condition_the_town_lacks_is_refused_before_anything_changes(town: Path) -> None:
    before = {p: p.read_bytes() for p in town.rglob("*.png")}
    with pytest.raises(ValueError, match=r"no images in condition\(s\) \['nigth'\]"):
        corrupt_town_labels(town, 0.5, conditions=("nigth", "fog"))
    assert {p: p.read_bytes() for p in town.rglob("*.png")} == before
    assert not (town / NOISE_RECORD).exists()
