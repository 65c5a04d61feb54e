"""Label-map cache: writes valid maps at the original size, resumes, reports bad images and bad maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from structvpr.data.images import BadImageError
from structvpr.data.label_maps import LabelMapError, label_path_for, read_label_map, write_label_map
from structvpr.segment.cache import build_label_cache
from structvpr.segment.segmenters import build_segmenter


@pytest.fixture(scope="module")
def small_segmenter():
    # tiny input keeps the test fast; the cache logic does not depend on the input size
    return build_segmenter("espnetv2", width=0.5, input_size=(32, 64))


def _make_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (width, height) in enumerate(sizes):
        path = folder / f"img_{index:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("num_workers", [0, 2])
def test_cache_writes_valid_maps_at_original_size_and_resumes(
    tmp_path: Path, small_segmenter, num_workers: int
) -> None:
    paths = _make_images(tmp_path / "database", [(128, 64), (100, 75), (64, 128), (128, 64), (90, 60)])
    summary = build_label_cache(paths, small_segmenter, batch_size=2, num_workers=num_workers, progress=False)
    assert (summary.total, summary.written, summary.already_done) == (5, 5, 0)
    for path in paths:
        label_path = tmp_path / "database_labels" / f"{path.stem}.png"
        width, height = Image.open(path).size
        labels = read_label_map(label_path, expected_hw=(height, width))
        assert labels.shape == (height, width)
    assert summary.class_pixels.sum() == sum(w * h for w, h in [(128, 64), (100, 75), (64, 128), (128, 64), (90, 60)])

    before = {p: label_path_for(p).stat() for p in paths}
    # a damaged map (wrong size) is recomputed; the others are left untouched
    write_label_map(label_path_for(paths[1]), np.zeros((5, 5), dtype=np.uint8))
    damaged_inode = label_path_for(paths[1]).stat().st_ino
    again = build_label_cache(paths, small_segmenter, batch_size=2, num_workers=num_workers, progress=False)
    assert (again.written, again.already_done) == (1, 4)
    for path in paths[:1] + paths[2:]:
        after = label_path_for(path).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before[path].st_ino, before[path].st_mtime_ns)
    assert label_path_for(paths[1]).stat().st_ino != damaged_inode
    assert read_label_map(label_path_for(paths[1]), expected_hw=(75, 100)).shape == (75, 100)
    assert np.array_equal(again.class_pixels, summary.class_pixels)


def test_bad_image_is_skipped_and_counted_or_fails_naming_it(tmp_path: Path, small_segmenter, capsys) -> None:
    paths = _make_images(tmp_path / "images", [(64, 32), (64, 32)])
    bad = tmp_path / "images" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    paths.insert(1, bad)
    with pytest.raises(BadImageError, match="broken.jpg.*--on-bad-image skip"):
        build_label_cache(paths, small_segmenter, batch_size=4, num_workers=0, progress=False)
    summary = build_label_cache(
        paths, small_segmenter, batch_size=4, num_workers=0, on_bad_image="skip", progress=False
    )
    assert summary.written == 2 and len(summary.bad_images) == 1
    assert "broken.jpg" in summary.bad_images[0] and "broken.jpg" in capsys.readouterr().err
    assert "1 bad images skipped" in summary.format()
    assert not label_path_for(bad).exists()


def test_precomputed_segmenter_cannot_build_a_cache(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precomputed"):
        build_label_cache([], build_segmenter("precomputed"))


def test_read_label_map_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    with pytest.raises(LabelMapError, match="x.png: label map does not exist"):
        read_label_map(path)
    write_label_map(path, np.full((4, 6), 3, dtype=np.uint8))
    with pytest.raises(LabelMapError, match=r"x.png: label map is 6x4 \(WxH\) but its image is 8x4"):
        read_label_map(path, expected_hw=(4, 8))
    write_label_map(path, np.array([[0, 19, 255, 200]], dtype=np.uint8))
    with pytest.raises(LabelMapError, match=r"x.png: label map holds ids \[19, 200\]"):
        read_label_map(path)
    Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(LabelMapError, match="x.png: .*mode RGB"):
        read_label_map(path)
    path.write_bytes(b"garbage")
    with pytest.raises(LabelMapError, match="x.png: cannot decode"):
        read_label_map(path)


def test_exif_rotated_photo_gets_a_map_of_its_upright_size_and_is_not_redone(tmp_path: Path, small_segmenter) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: stored 80x40, shown 40x80
    path = folder / "portrait.jpg"
    Image.new("RGB", (80, 40), (90, 120, 200)).save(path, exif=exif)
    first = build_label_cache([path], small_segmenter, num_workers=0, progress=False)
    assert first.written == 1
    assert read_label_map(label_path_for(path)).shape == (80, 40)
    second = build_label_cache([path], small_segmenter, num_workers=0, progress=False)
    assert (second.written, second.already_done) == (0, 1)
