"""Fault injection for the reliability suite: run `structvpr` in a real child process and kill it.

Two ways to pick the moment of a `kill -9`:

- timing: start the command in its own process group, poll until some output exists, wait a
  seeded random delay, then SIGKILL the whole group (`start`, `wait_until`, `kill_group`);
- a commit point: `run_killed_at_replace` runs the CLI in a child whose `os.replace` SIGKILLs the
  child itself just before or just after the n-th rename whose destination matches a pattern.
  Every atomic write in structvpr ends in `os.replace`, so this reaches the exact instants where a
  torn or mixed state could be left behind (the temporary file is complete but not yet renamed,
  or one file of a set is renamed and the next is not). Nothing is mocked: the real command runs
  and the real kernel kills it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Runs `python -m structvpr.cli ARGS` with os.replace wrapped; configured by environment variables.
_KILL_AT_REPLACE = r"""
import os, re, runpy, signal, sys
pattern = re.compile(os.environ["STRUCTVPR_KILL_PATTERN"])
nth = int(os.environ["STRUCTVPR_KILL_NTH"])
when = os.environ["STRUCTVPR_KILL_WHEN"]
real_replace = os.replace
hits = 0

def replace(src, dst, *args, **kwargs):
    global hits
    matched = pattern.search(os.fsdecode(dst)) is not None
    hits += matched
    if matched and hits == nth and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = real_replace(src, dst, *args, **kwargs)
    if matched and hits == nth and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result

os.replace = replace
sys.argv = ["structvpr", *sys.argv[1:]]
runpy.run_module("structvpr.cli", run_name="__main__", alter_sys=True)
"""


def child_env() -> dict[str, str]:
    """Environment of every child: one BLAS/OpenMP thread (deterministic, and fastest for tiny models
    on two shared cores), no progress bars."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TQDM_DISABLE="1", PYTHONUNBUFFERED="1")
    return env


def structvpr_command(*args: str | Path) -> list[str]:
    """`python -m structvpr.cli ARGS` with this interpreter."""
    return [sys.executable, "-m", "structvpr.cli", *map(str, args)]


def run_structvpr(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI to the end in a child process; returns the completed process (text output)."""
    return subprocess.run(structvpr_command(*args), capture_output=True, text=True, env=child_env(), timeout=timeout)


def run_killed_at_replace(
    *args: str | Path, pattern: str, nth: int = 1, when: str = "after", timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run the CLI and SIGKILL it just `when` ("before" | "after") the n-th `os.replace` whose
    destination matches the regular expression `pattern`.

    Raises AssertionError when the command ended without reaching that point (the fault was not
    injected, so the test would prove nothing).
    """
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    env = child_env()
    env.update(STRUCTVPR_KILL_PATTERN=pattern, STRUCTVPR_KILL_NTH=str(nth), STRUCTVPR_KILL_WHEN=when)
    result = subprocess.run(
        [sys.executable, "-c", _KILL_AT_REPLACE, *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert result.returncode == -signal.SIGKILL, (
        f"expected SIGKILL {when} rename #{nth} matching {pattern!r}, got exit code {result.returncode}:\n"
        f"{result.stderr[-3000:]}"
    )
    return result


def start(*args: str | Path, log: Path) -> subprocess.Popen:
    """Start the CLI in a new process group (so kill_group also reaches DataLoader workers);
    stdout and stderr go to `log`."""
    with open(log, "wb") as handle:
        return subprocess.Popen(
            structvpr_command(*args), stdout=handle, stderr=subprocess.STDOUT, env=child_env(), start_new_session=True
        )


def wait_until(process: subprocess.Popen, condition: Callable[[], bool], timeout: float, log: Path) -> None:
    """Poll `condition` every 5 ms; fail if the process ends or `timeout` s pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(
                f"process ended (exit {process.returncode}) before the kill point:\n"
                f"{log.read_text(errors='replace')[-3000:]}"
            )
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError(f"kill point not reached in {timeout} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.005)


def kill_group(process: subprocess.Popen) -> bool:
    """SIGKILL the process group of `process` (started by `start`); returns whether it was still
    running at that moment (False: it had already finished, so nothing was interrupted)."""
    running = process.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return running


def temporary_files(folder: Path) -> list[Path]:
    """Leftover temporary files of io_utils.atomic_write (`.<name>.<random>.tmp`) under `folder`."""
    return sorted(path for path in folder.rglob(".*.tmp"))
