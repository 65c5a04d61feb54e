"""Tests of the synthetic town: label/RGB alignment, poses, determinism, condition invariance."""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from structvpr.cli import main as cli_main
from structvpr.data.label_maps import label_path_for
from structvpr.data.synth import CONDITIONS, build_town, generate_town, render_frame
from structvpr.data.synth import classes as C
from structvpr.data.synth.camera import camera_for_visit
from structvpr.data.synth.dynamic import dynamic_objects
from structvpr.data.synth.primitives import PrimitiveBuilder

SIZE = (48, 64)  # (H, W)
PLACES = 6


@pytest.fixture(scope="module")
def town():
    return build_town(12, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "town"
    generate_town(out, PLACES, seed=5, image_size=SIZE, same_condition_fraction=0.5, progress=False)
    return out


def _metadata(root: Path) -> list[dict]:
    with open(root / "metadata.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _render(town, place_index, condition, camera_seed, dynamic_seed):
    place = town.places[place_index]
    camera = camera_for_visit(place, np.random.default_rng(camera_seed), SIZE)
    rng = np.random.default_rng(dynamic_seed)
    frame = render_frame(town, camera, CONDITIONS[condition], dynamic_objects(town, camera, rng), rng)
    return frame


def test_labels_align_with_rgb_sky_and_objects(town):
    """Every sky-labelled pixel has the condition's sky colour; other pixels do not."""
    frame = _render(town, 2, "day", 1, 2)
    rgb = frame.rgb.astype(int)
    sky = frame.labels == C.SKY
    assert 0.1 < sky.mean() < 0.6  # the view does show sky and a street
    assert (frame.labels == C.ROAD).mean() > 0.1
    assert (frame.labels == C.BUILDING).mean() > 0.05
    blue = rgb[..., 2] - rgb[..., 0] > 25  # day sky is blue at every elevation
    assert blue[sky].mean() > 0.97
    assert blue[~sky].mean() < 0.1
    assert np.all(np.isinf(frame.depth[sky])) and np.all(np.isfinite(frame.depth[~sky]))
    night = _render(town, 2, "night", 1, 2)
    assert night.rgb[night.labels == C.SKY].mean() < 35
    assert np.array_equal(night.labels == C.SKY, sky)  # same pose, same dynamic objects


def test_a_known_object_carries_its_class(town):
    """A red box placed right in front of the camera is labelled with its class where it is red."""
    place = town.places[0]
    camera = camera_for_visit(place, np.random.default_rng(0), SIZE)
    builder = PrimitiveBuilder(key_offset=1 << 41)
    ahead_x = camera.x + 6.0 * np.cos(camera.yaw)
    ahead_y = camera.y + 6.0 * np.sin(camera.yaw)
    builder.box(
        ahead_x - 0.5, ahead_y - 0.5, ahead_x + 0.5, ahead_y + 0.5, 0.0, 3.0, C.TRAFFIC_SIGN, 0, (0.9, 0.05, 0.05)
    )
    box = builder.build()
    box.material[:] = 1  # plain material: uniform red
    frame = render_frame(town, camera, CONDITIONS["day"], box, np.random.default_rng(0))
    rgb = frame.rgb.astype(int)
    red = (rgb[..., 0] > 120) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    labelled = frame.labels == C.TRAFFIC_SIGN
    assert labelled.sum() > 30
    assert red[labelled].mean() > 0.95 and labelled[red].mean() > 0.95


def test_conditions_change_appearance_not_static_labels(town):
    """Same pose under every condition: static labels agree wherever no car or person is."""
    frames = [_render(town, 4, name, 7, 100 + i) for i, name in enumerate(CONDITIONS)]
    reference = frames[0]
    for frame in frames[1:]:
        dynamic = np.isin(reference.labels, C.DYNAMIC_CLASSES) | np.isin(frame.labels, C.DYNAMIC_CLASSES)
        assert np.array_equal(reference.labels[~dynamic], frame.labels[~dynamic])
        change = np.abs(reference.rgb.astype(int) - frame.rgb.astype(int)).mean()
        assert change > 12, f"{frame.camera}: appearance barely changed ({change:.1f})"
    same_dynamic = [_render(town, 4, name, 7, 99) for name in ("day", "winter", "night")]
    assert all(np.array_equal(same_dynamic[0].labels, f.labels) for f in same_dynamic[1:])


def test_dynamic_objects_differ_between_traversals(town):
    counts = [(_render(town, 5, "day", 7, seed).labels >= C.PERSON).sum() for seed in range(6)]
    assert len(set(counts)) > 1


def test_layout_metadata_and_positives_match_poses(dataset):
    rows = _metadata(dataset)
    assert {"path", "split", "role", "place_id", "condition", "east", "north", "heading"} <= set(rows[0])
    for row in rows:
        path = dataset / row["path"]
        assert path.is_file() and (dataset / row["label_path"]) == label_path_for(path)
        assert path.parent.name == row["role"] and path.parent.parent.name == row["split"]
        east, north = (float(v) for v in path.name.split("@")[1:3])
        assert (east, north) == (float(row["east"]), float(row["north"]))
        labels = np.asarray(Image.open(dataset / row["label_path"]))
        assert labels.shape == SIZE and labels.dtype == np.uint8
        assert Image.open(path).size == (SIZE[1], SIZE[0])
        assert (row["condition"] == "day") == (row["role"] == "database" or row["same_condition"] == "1")
    assert any(r["same_condition"] == "1" for r in rows)
    xy = {r["path"]: np.array([float(r["east"]), float(r["north"])]) for r in rows}
    database = [r for r in rows if r["role"] == "database"]
    for query in (r for r in rows if r["role"] == "queries"):
        same_split = [d for d in database if d["split"] == query["split"]]
        near = {d["place_id"] for d in same_split if np.linalg.norm(xy[d["path"]] - xy[query["path"]]) <= 25}
        assert query["place_id"] in near  # the query's own place is always a positive
    splits = {}
    for r in rows:
        splits.setdefault(r["split"], []).append(xy[r["path"]])
    names = sorted(splits)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            gap = np.linalg.norm(np.stack(splits[a])[:, None] - np.stack(splits[b])[None], axis=2).min()
            assert gap > 25.0, f"splits {a} and {b} are only {gap:.1f} m apart"


def test_layout_reader_finds_the_same_positives(dataset):
    layouts = pytest.importorskip("structvpr.data.layouts")
    rows = _metadata(dataset)
    test_split = layouts.open_dataset(dataset, split="test")
    coords = {dataset / r["path"]: (float(r["east"]), float(r["north"])) for r in rows}
    assert {p.name for p in test_split.database_paths} == {
        Path(r["path"]).name for r in rows if r["split"] == "test" and r["role"] == "database"
    }
    for query, positives in zip(test_split.query_paths, test_split.positives_per_query(), strict=True):
        expected = {p for p in test_split.database_paths if np.hypot(*np.subtract(coords[p], coords[query])) <= 25.0}
        assert {test_split.database_paths[i] for i in positives} == expected


def test_same_seed_gives_identical_files_and_resume_restores(dataset, tmp_path):
    again = tmp_path / "again"
    generate_town(
        again, PLACES, seed=5, image_size=SIZE, same_condition_fraction=0.5, progress=False, workers=2
    )  # a worker pool must not change a single byte
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (dataset / name).read_bytes() == (again / name).read_bytes(), name
    victim = again / _metadata(again)[3]["path"]
    victim.unlink()
    result = generate_town(again, PLACES, seed=5, image_size=SIZE, same_condition_fraction=0.5, progress=False)
    assert result.rendered == 1 and result.reused == result.num_images - 1
    assert victim.read_bytes() == (dataset / victim.relative_to(again)).read_bytes()
    other = tmp_path / "other"
    generate_town(other, PLACES, seed=6, image_size=SIZE, progress=False)
    assert (other / "metadata.csv").read_bytes() != (dataset / "metadata.csv").read_bytes()


def test_other_settings_in_same_folder_is_a_clear_error(dataset, tmp_path):
    target = tmp_path / "town"
    generate_town(target, 3, seed=1, image_size=SIZE, progress=False)
    with pytest.raises(ValueError, match="synth_config.json.*seed"):
        generate_town(target, 3, seed=2, image_size=SIZE, progress=False)
    generate_town(target, 3, seed=2, image_size=SIZE, progress=False, overwrite=True)
    assert len(list((target / "images").rglob("*.jpg"))) == len(_metadata(target))
    assert len(list((target / "images").rglob("*.png"))) == len(_metadata(target))


def test_cli_writes_dataset_and_preview(tmp_path):
    preview = tmp_path / "sheet.png"
    code = cli_main(
        [
            "synth",
            "--out",
            str(tmp_path / "town"),
            "--places",
            "3",
            "--image-size",
            "32",
            "40",
            "--conditions",
            "night",
            "--no-progress",
            "--preview",
            str(preview),
        ]
    )
    assert code == 0
    assert len(_metadata(tmp_path / "town")) >= 6
    sheet = Image.open(preview)
    # The preview shows the generated town (issue 13 item 15): its conditions (day + night) and
    # image size (32 x 40), two of its three places.
    assert sheet.size == (40 * 2, 2 * (2 * 32 + 14))


def test_killed_run_is_detectable_and_resumes_to_the_same_bytes(dataset, tmp_path):
    """SIGKILL a real generation mid-way: no metadata.csv; a re-run completes it byte-identically."""
    target = tmp_path / "killed"
    code = (
        "from structvpr.data.synth import generate_town; "
        f"generate_town({str(target)!r}, {PLACES}, seed=5, image_size={SIZE}, "
        "same_condition_fraction=0.5, progress=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not any((target / "images").rglob("*.jpg")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.kill()
    process.wait()
    assert not (target / "metadata.csv").exists()
    result = generate_town(target, PLACES, seed=5, image_size=SIZE, same_condition_fraction=0.5, progress=False)
    assert result.reused >= 1 and result.rendered >= 1
    for name in (p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file()):
        assert (target / name).read_bytes() == (dataset / name).read_bytes(), name
    assert not list(target.rglob("*.tmp"))
