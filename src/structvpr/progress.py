"""Progress for long steps that reads well on a terminal and in a log file.

On a terminal (stderr is a TTY) a step prints its name at once and a bar redraws in place. In a
log file (no TTY) nothing is written for a step that ends within `LOG_INTERVAL` seconds, and a
longer one writes at most one plain line every `LOG_INTERVAL` seconds: no carriage returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

LOG_INTERVAL = 10.0  # seconds between two progress lines in a log file

# Lightning prints an advertisement ("Tip: ... try installing litlogger ...") for every trainer.
_ADVERTISEMENT_MARKERS = ("litlogger", "litmodels", "lightning.ai/pricing", "Lightning Experiments")
_ADVERTISING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr) is an interactive terminal."""
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class _Ticker:
    """Calls `tick(elapsed)` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, interval: float, tick: Any) -> None:
        self.interval, self.tick = interval, tick
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick(time.monotonic() - self.start)

    def stop(self) -> float:
        """Stop ticking; returns the seconds since the start."""
        self._stop.set()
        self._thread.join()
        return time.monotonic() - self.start


@contextlib.contextmanager
def status(
    message: str, stream: TextIO | None = None, interval: float = LOG_INTERVAL, enabled: bool = True
) -> Iterator[None]:
    """Announce a step that may take a while (loading a model, exporting, rendering a preview).

    Terminal: `message ...` at once, and `message: done in N s` when it took over 2 s. Log file:
    nothing if the step ends within `interval` s; otherwise `message ... (still running, N s)`
    every `interval` s and a final `done` line. Nothing at all with enabled=False.
    """
    if not enabled:
        yield
        return
    out = stream if stream is not None else sys.stderr
    terminal = is_terminal(out)
    spoke = [terminal]

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    def tick(elapsed: float) -> None:
        spoke[0] = True
        say(f"{message} ... (still running, {_format_seconds(elapsed)})")

    if terminal:
        say(f"{message} ...")
    ticker = _Ticker(interval, tick)
    try:
        yield
    finally:
        elapsed = ticker.stop()
    if spoke[0] and (not terminal or elapsed > 2):
        say(f"{message}: done in {_format_seconds(elapsed)}")


class PlainProgress:
    """A progress counter for log files: one plain line at most every `interval` seconds, and a
    last line at the end if any line was written. Same `update`/`close` interface as tqdm."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL,
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.lines = 0

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        percent = f" ({100 * self.n / self.total:.0f} %)" if self.total else ""
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{percent}, {_format_seconds(elapsed)}"

    def update(self, count: int = 1) -> None:
        """Count `count` more items; print a line if `interval` seconds passed since the last one."""
        self.n += count
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.lines += 1
            print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Print the final count if any line was printed before."""
        if self.lines:
            print(self._line() + " done", file=self.stream, flush=True)
            self.lines = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(
    total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False, stream: TextIO | None = None
) -> Any:
    """A tqdm bar on a terminal, a `PlainProgress` (a line every LOG_INTERVAL s) in a log file, or
    a silent counter with `disable`. Use as a context manager; call `update(n)`."""
    out = stream if stream is not None else sys.stderr
    if disable:
        return PlainProgress(total, desc, unit, initial, stream=out, interval=float("inf"))
    if is_terminal(out):
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=out)
    return PlainProgress(total, desc, unit, initial, stream=out)


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not any(marker in text for marker in _ADVERTISEMENT_MARKERS)


def configure_command_output() -> None:
    """Set up a command's output: third-party advertisements (Lightning's litlogger / litmodels
    tips) are dropped, and without a terminal the tqdm bars of libraries (Lightning, the dataset
    loops) redraw at most every LOG_INTERVAL s instead of several times a second. Idempotent;
    imports none of those libraries."""
    if not is_terminal():
        os.environ.setdefault("TQDM_MININTERVAL", str(LOG_INTERVAL))
    for name in _ADVERTISING_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropAdvertisements) for existing in logger.filters):
            logger.addFilter(_DropAdvertisements())
