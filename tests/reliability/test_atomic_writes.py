"""A write that fails half-way (a file-size limit stands in for a full disk) keeps the old file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from structvpr.io_utils import atomic_torch_save, atomic_write_bytes, sha256_of_file

_WRITER = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG as an OSError instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    from structvpr.io_utils import atomic_write_bytes
    try:
        atomic_write_bytes(sys.argv[1], b"x" * 100_000)
    except OSError as error:
        print("write failed:", error.errno)
        sys.exit(3)
""")


def test_failed_write_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "index.bin"
    atomic_write_bytes(target, b"previous good content")
    before = sha256_of_file(target)
    result = subprocess.run([sys.executable, "-c", _WRITER, str(target)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "write failed" in result.stdout
    assert sha256_of_file(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.bin"], "temporary file left behind"


def test_exception_inside_atomic_write_removes_temp_and_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "ckpt.pt"
    atomic_torch_save({"step": 1, "weight": torch.ones(3)}, target)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"step": 2, "bad": Unsaveable()}, target)
    loaded = torch.load(target, weights_only=True)
    assert loaded["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]
