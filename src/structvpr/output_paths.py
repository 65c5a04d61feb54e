"""Check output locations before any expensive work: an output that cannot be written fails at
once with one line naming the path, never after minutes of work.

Nothing is created by these checks (a probe file is written and removed at once).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class OutputPathError(ValueError):
    """An output location cannot be written; the message names it and says why."""


def _nearest_existing(path: Path) -> Path:
    """`path` itself or its nearest ancestor that exists."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def _check_writable_folder(folder: Path, target: Path, what: str) -> None:
    """Raise OutputPathError if a file cannot be created in existing `folder` (on behalf of `target`)."""
    if not folder.is_dir():
        raise OutputPathError(f"{target}: cannot create the {what}: {folder} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".structvpr-write-check-", dir=folder)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        where = "" if folder == target.absolute() else f" (in {folder})"
        raise OutputPathError(f"{target}: cannot write the {what} here: {reason}{where}") from None
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def check_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """Raise OutputPathError unless `path` is a writable folder or can be created as one.
    Returns `path` as a Path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputPathError(f"{path}: exists and is not a folder; give a folder for the {what}")
    _check_writable_folder(_nearest_existing(path), path, what)
    return path


def check_output_file(path: str | Path, what: str = "output file") -> Path:
    """Raise OutputPathError unless `path` names a file that can be (over)written: not a folder, and
    its folder exists or can be created and is writable. Returns `path` as a Path."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{path}: is a folder; give a file name for the {what}")
    _check_writable_folder(_nearest_existing(path.parent), path, what)
    return path
