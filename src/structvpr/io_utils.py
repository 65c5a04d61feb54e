"""Atomic file writing and file hashing: nothing half-written ever replaces a good file."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; give finished files the usual permissions (0666 minus the umask).
_FILE_MODE = 0o666 & ~_current_umask()
# mkdtemp creates 0700 folders; a finished folder gets the usual 0777 minus the umask.
FOLDER_MODE = 0o777 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`.

    On any exception (including a full disk) the temporary file is removed and the previous
    content of `path`, if any, is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp_name, _FILE_MODE)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: object, path: str | Path) -> None:
    """`torch.save` to a temporary file, then rename: a killed run never leaves a torn checkpoint."""
    import torch

    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


def sha256_of_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpickling_refusal_reason(error: Exception) -> str:
    """The line of a `torch.load(weights_only=True)` UnpicklingError that says what was refused
    ("Unsupported global: GLOBAL os.system", ...), at most 200 characters: torch's first lines are
    generic advice. Callers put it in their one-line "<path>: refused to load" error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = next(
        (line for line in lines if line.lower().startswith(("unsupported", "trying to load"))),
        lines[0] if lines else type(error).__name__,
    )
    return reason[:200]
