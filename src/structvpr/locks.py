"""One writer per output: a lock file `.<name>.lock` beside every folder or file a command writes.

The lock is an advisory `flock` on that file, so the kernel releases it when its holder dies,
however it dies (even `kill -9`). The file itself records the holder (pid, host, command, start
time) for the error message of a second writer; a holder that ends normally empties it. A
non-empty file whose lock is free was therefore left by a killed process: the next writer says
so and takes it over. The lock files stay (empty) after a clean release, by design: removing
them would race with a writer that has just opened one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path


class OutputLockedError(RuntimeError):
    """Another running process writes the same output; the message names it and its holder."""


def lock_path_for(target: str | Path) -> Path:
    """The lock file of `target`: `.<name>.lock` in the same folder."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def _holder_text(record: dict) -> str:
    started = record.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')} ({record.get('command', '?')}), since {since}"


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    if not raw.strip():
        return {}
    try:
        record = json.loads(raw.decode("utf-8", "replace"))
    except json.JSONDecodeError:
        return {"command": "unknown holder"}
    return record if isinstance(record, dict) else {"command": "unknown holder"}


def _write_record(fd: int, record: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(record).encode("utf-8"))
    os.fsync(fd)


@contextlib.contextmanager
def output_lock(
    target: str | Path, wait_seconds: float = 0.0, announce: bool = True, lock_file: str | Path | None = None
) -> Iterator[Path]:
    """Hold the lock of `target` (a folder or file to be written) for the duration of the block.

    Raises OutputLockedError naming the holder if another live process holds it after waiting
    `wait_seconds`. A lock left by a killed process is taken over (with a note on stderr when
    `announce`). The lock file is `lock_file` (default `lock_path_for(target)`); its folder is
    created if needed. Yields the lock file's path.
    """
    target = Path(target)
    lock = Path(lock_file) if lock_file is not None else lock_path_for(target)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as error:
                if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = _read_record(fd)
                    raise OutputLockedError(
                        f"{target}: another structvpr process is writing here: {_holder_text(holder)}; "
                        f"wait for it to finish or stop it (lock file {lock})"
                    ) from None
                time.sleep(0.2)
        previous = _read_record(fd)
        if previous and announce:
            print(
                f"{target}: taking over the lock of {_holder_text(previous)}, which ended without releasing it",
                file=sys.stderr,
                flush=True,
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(["structvpr", *sys.argv[1:]])[:300],
            "started": time.time(),
        }
        _write_record(fd, record)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)  # released cleanly: an empty lock file is not stale
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def is_distributed_worker() -> bool:
    """Whether this process is a secondary rank that a distributed launcher (Lightning / torchrun)
    started with the same command line: rank 0 holds the lock for all of them."""
    return any(os.environ.get(name, "0") not in ("", "0") for name in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def run_folder_lock(target: str | Path) -> contextlib.AbstractContextManager:
    """`output_lock(target)` for the main process; no lock in a distributed worker."""
    return contextlib.nullcontext() if is_distributed_worker() else output_lock(target)


def read_lock_holder(target: str | Path) -> dict:
    """The record of the process that holds or last held (without releasing) `target`'s lock, or {}."""
    lock = lock_path_for(target)
    if not lock.is_file():
        return {}
    fd = os.open(lock, os.O_RDONLY)
    try:
        return _read_record(fd)
    finally:
        os.close(fd)
