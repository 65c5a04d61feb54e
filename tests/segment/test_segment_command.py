"""`structvpr segment` on a 200-image folder: killed half-way, re-run, finishes without redoing work."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from structvpr.data.label_maps import read_label_map

NUM_IMAGES = 200


def _command(folder: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "structvpr.cli",
        "segment",
        str(folder),
        "--width",
        "0.5",
        "--input-size",
        "256x128",
        "--batch-size",
        "2",
        "--num-workers",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]


def _finished(labels: Path) -> dict[str, os.stat_result]:
    return {p.name: p.stat() for p in labels.glob("*.png")} if labels.is_dir() else {}


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(NUM_IMAGES):
        Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(folder / f"f{index:03d}.png")
    labels = tmp_path / "frames_labels"

    process = subprocess.Popen(_command(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while len(_finished(labels)) < 10 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    done_before = _finished(labels)
    assert 10 <= len(done_before) < NUM_IMAGES, "the run was not interrupted half-way"

    result = subprocess.run(_command(folder), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    match = re.search(r"(\d+) label maps written, (\d+) already done, 0 bad", result.stdout)
    assert match, result.stdout
    assert int(match.group(2)) >= len(done_before)  # every finished map from the first run was kept
    assert int(match.group(1)) + int(match.group(2)) == NUM_IMAGES

    done_after = _finished(labels)
    assert len(done_after) == NUM_IMAGES
    for name, stat in done_before.items():
        assert (done_after[name].st_ino, done_after[name].st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), name
    for name in done_after:
        assert read_label_map(labels / name, expected_hw=(64, 128)).shape == (64, 128)
    assert not list(labels.glob(".*.tmp")), "temporary files of the killed run were left behind"


def _run_segment_command(argv: list[str]) -> int:
    """Parse and run only the `segment` subcommand (the full CLI imports every other part too)."""
    import argparse

    from structvpr.commands import segment

    parser = argparse.ArgumentParser(prog="structvpr")
    segment.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_command_reports_bad_images_by_flag(tmp_path: Path, capsys) -> None:
    from structvpr.data.images import BadImageError

    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(3):
        Image.new("RGB", (64, 32), (40 * index, 90, 160)).save(folder / f"s{index}.jpg")
    (folder / "s9.jpg").write_bytes(b"truncated")
    base = ["segment", str(folder), "--width", "0.5", "--input-size", "64x32", "--num-workers", "0", "--quiet"]

    with pytest.raises(BadImageError, match="s9.jpg: cannot decode image"):
        _run_segment_command(base)

    assert _run_segment_command([*base, "--on-bad-image", "skip", "--preview", str(tmp_path / "previews")]) == 0
    captured = capsys.readouterr()
    assert "3 label maps written" in captured.out and "1 bad images skipped" in captured.out
    assert "s9.jpg" in captured.err
    assert len(list((tmp_path / "previews").glob("*.png"))) == 3
    assert sorted(p.name for p in (tmp_path / "shots_labels").glob("*.png")) == ["s0.png", "s1.png", "s2.png"]
