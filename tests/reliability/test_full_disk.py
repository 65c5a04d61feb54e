"""A disk that fills up while a file is rewritten leaves the previous file intact and no litter.

A child process lowers RLIMIT_FSIZE (and ignores SIGXFSZ) so that any write past the limit fails
with EFBIG, exactly where a full disk fails with ENOSPC; it then rewrites a checkpoint, an index
folder and a descriptor file that already exist. tests/reliability/test_atomic_writes.py covers
the bare atomic_write_bytes; this file covers the writers built on it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from faults import child_env

from structvpr.io_utils import atomic_torch_save, sha256_of_file

_REWRITE_UNDER_A_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    import numpy as np, torch
    what, target = sys.argv[1], Path(sys.argv[2])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG as an OSError instead of a kill
    limit = 64 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        if what == "checkpoint":
            from structvpr.io_utils import atomic_torch_save
            atomic_torch_save({"state_dict": {"w": torch.ones(100_000)}, "epoch": 2}, target)
        elif what == "index":
            from structvpr.index import PlaceIndex
            PlaceIndex.build(np.eye(64, 512, dtype=np.float32), kind="flat").save(target)
        elif what == "descriptors":
            from torch import nn
            from structvpr.evaluate.descriptors import DescribeOptions, compute_descriptors
            image = target.parent / "tiny.png"
            options = DescribeOptions(image_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, progress=False)
            compute_descriptors(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 512)), [image] * 64,
                                options, out_file=target)
    except (OSError, RuntimeError) as error:  # torch.save re-raises EFBIG as a RuntimeError
        print("write failed:", type(error).__name__, error)
        sys.exit(3)
""")


def rewrite_under_full_disk(what: str, target: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _REWRITE_UNDER_A_FULL_DISK, what, str(target)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )


def test_checkpoint_rewrite_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.zeros(10)}, "epoch": 1}, target)
    before = sha256_of_file(target)
    result = rewrite_under_full_disk("checkpoint", target)
    assert result.returncode == 3, result.stderr[-2000:]
    assert sha256_of_file(target) == before
    assert torch.load(target, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "temporary file left behind"


def test_index_rewrite_on_a_full_disk_keeps_the_previous_index(tmp_path: Path) -> None:
    from structvpr.index import PlaceIndex

    target = tmp_path / "index"
    PlaceIndex.build(np.eye(4, 8, dtype=np.float32), kind="flat").save(target)
    result = rewrite_under_full_disk("index", target)
    assert result.returncode == 3, result.stderr[-2000:]
    assert len(PlaceIndex.load(target)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["index"], "staging folder left behind"


def test_descriptor_file_rewrite_on_a_full_disk_keeps_the_previous_file(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "tiny.png")
    target = tmp_path / "database.npy"
    np.save(target, np.full((64, 512), 7.0, dtype=np.float32))
    result = rewrite_under_full_disk("descriptors", target)
    assert result.returncode == 3, result.stderr[-2000:]
    assert (np.load(target, allow_pickle=False) == 7.0).all()


def test_descriptor_file_rewrite_on_a_full_disk_leaves_no_temporary_file(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "tiny.png")
    np.save(tmp_path / "database.npy", np.full((64, 512), 7.0, dtype=np.float32))
    assert rewrite_under_full_disk("descriptors", tmp_path / "database.npy").returncode == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["database.npy", "tiny.png"], "temporary file left"


@pytest.mark.slow  # control run, one more child process
def test_the_same_writes_succeed_without_the_limit(tmp_path: Path) -> None:
    """Control: the writes above fail only because of the disk limit."""
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "tiny.png")
    script = _REWRITE_UNDER_A_FULL_DISK.replace("limit = 64 * 1024", "limit = resource.RLIM_INFINITY")
    script = script.replace(
        "what, target = sys.argv[1], Path(sys.argv[2])",
        "for what, target in zip(sys.argv[1::2], map(Path, sys.argv[2::2])):",
    )
    body = script[script.index("signal.signal") :]
    script = script[: script.index("signal.signal")] + textwrap.indent(body, "    ")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            *(
                item
                for what in ("checkpoint", "index", "descriptors")
                for item in (what, str(tmp_path / f"{what}.out"))
            ),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(tmp_path / "checkpoint.out", weights_only=True)["epoch"] == 2
    assert np.load(tmp_path / "descriptors.out", allow_pickle=False).shape == (64, 512)
