"""Merge tables: built-ins cover all 19 trainIds, user YAML tables are checked, merging is exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from structvpr.segment.classes import (
    BUILTIN_TABLES,
    CITYSCAPES_CLASSES,
    LabelMapValueError,
    MergeTableError,
    load_merge_table,
)


@pytest.mark.parametrize("name", sorted(BUILTIN_TABLES))
def test_builtin_tables_cover_every_train_id_once(name: str) -> None:
    table = load_merge_table(name)
    members = sorted(i for group in table.groups for i in group)
    assert members == list(range(19))
    assert table.lookup.dtype == np.uint8 and table.lookup.shape == (256,)
    assert table.lookup[255] == 255
    assert set(table.lookup[:19].tolist()) == set(range(table.num_classes))
    assert len(table.group_names) == table.num_classes


def test_structural6_is_the_documented_default() -> None:
    table = load_merge_table()
    assert table.name == "structural-6" and table.num_classes == 6
    assert table.group_names == ("ground", "construction", "object", "vegetation", "sky", "dynamic")
    names = {g: [CITYSCAPES_CLASSES[i] for i in ids] for g, ids in zip(table.group_names, table.groups, strict=False)}
    assert names["ground"] == ["road", "sidewalk", "terrain"]
    assert table.dynamic_groups == (5,)
    assert load_merge_table("cityscapes-7").dynamic_groups == (5, 6)  # human, vehicle
    assert load_merge_table("cityscapes-19").dynamic_groups == tuple(range(11, 19))


def test_merge_numpy_and_torch_agree() -> None:
    table = load_merge_table("structural-6")
    labels = np.array([[0, 1, 2, 255], [9, 10, 13, 8]], dtype=np.uint8)
    expected = np.array([[0, 0, 1, 255], [0, 4, 5, 3]], dtype=np.uint8)
    assert np.array_equal(table.merge(labels), expected)
    merged = table.merge(torch.from_numpy(labels))
    assert merged.dtype == torch.uint8 and torch.equal(merged, torch.from_numpy(expected))


def test_merge_rejects_ids_outside_the_table() -> None:
    table = load_merge_table()
    with pytest.raises(LabelMapValueError, match=r"a.png: label map holds ids \[19, 40\]"):
        table.merge(np.array([[19, 40, 3]], dtype=np.uint8), source="a.png")
    with pytest.raises(LabelMapValueError, match=r"\[19\]"):
        table.merge(torch.tensor([[19, 0]]))


def test_user_table_from_yaml_with_names_and_ids(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: two-way\ngroups:\n  static: [road, sidewalk, 2, 3, 4, 5, traffic_light, 7, 8, 9, sky]\n"
        "  moving: [11, 12, 13, 14, 15, 16, 17, 18]\n"
    )
    table = load_merge_table(path)
    assert table.name == "two-way" and table.group_names == ("static", "moving")
    assert table.dynamic_groups == (1,)
    assert table.merge(np.array([6, 10, 18, 255], dtype=np.uint8)).tolist() == [0, 0, 1, 255]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            "a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 23]\nb: [11, 12, 13, 14, 15, 16, 17, 18]\n",
            "unknown Cityscapes trainId 23",
        ),
        ("a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\nb: [11, 12, 13, 14, 15, 16, 17]\n", r"missing bicycle \(18\)"),
        ("a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]\nb: [11, 12, 13, 14, 15, 16, 17, 18]\n", "is in both"),
        ("a: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, lamp]\nb: [11, 12, 13, 14, 15, 16, 17, 18]\n", "'lamp'"),
        ("[1, 2, 3]\n", "expected a mapping"),
        ("a: [0, 1\n", "cannot parse YAML"),
    ],
)
def test_bad_user_tables_are_clear_errors_naming_the_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "table.yaml"
    path.write_text(body)
    with pytest.raises(MergeTableError, match=message) as info:
        load_merge_table(path)
    assert str(path) in str(info.value)


def test_unknown_table_name() -> None:
    with pytest.raises(MergeTableError, match="not a built-in merge table"):
        load_merge_table("structural-7")
