"""How long `structvpr` takes before it prints: --help and argument errors (issue 13 item 11).

Runs each command line several times in a fresh interpreter and prints the median wall time and
its ratio to `python -c pass` (the interpreter's own start). Target: <= 1.0 s on 2 cores.

    python benchmarks/bench_cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "python -c pass": ["-c", "pass"],
    "structvpr --help": ["-m", "structvpr.cli", "--help"],
    "structvpr index build --help": ["-m", "structvpr.cli", "index", "build", "--help"],
    "structvpr query --help": ["-m", "structvpr.cli", "query", "--help"],
    "structvpr export --help": ["-m", "structvpr.cli", "export", "--help"],
    "structvpr synth --help": ["-m", "structvpr.cli", "synth", "--help"],
    "structvpr demo --help": ["-m", "structvpr.cli", "demo", "--help"],
    "structvpr train --help": ["-m", "structvpr.cli", "train", "--help"],
    "structvpr segment --help": ["-m", "structvpr.cli", "segment", "--help"],
    "structvpr evaluate --help": ["-m", "structvpr.cli", "evaluate", "--help"],
    "argument error: index build (no --out)": ["-m", "structvpr.cli", "index", "build", "map", "--model", "m.pt"],
    "argument error: query -k 0": ["-m", "structvpr.cli", "query", "q.jpg", "--index", "i", "-k", "0"],
    "argument error: unknown command": ["-m", "structvpr.cli", "bogus"],
}


def median_seconds(arguments: list[str], runs: int) -> float:
    """Median wall time of `python ARGUMENTS` over `runs` runs (output discarded)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src") + os.pathsep + env.get("PYTHONPATH", "")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *arguments], capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print one line per case: median seconds and the ratio to `python -c pass`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    baseline = median_seconds(CASES["python -c pass"], args.runs)
    print(f"load average {os.getloadavg()[0]:.1f}; median of {args.runs} runs")
    for name, arguments in CASES.items():
        seconds = baseline if name == "python -c pass" else median_seconds(arguments, args.runs)
        print(f"{name:42s} {seconds:6.3f} s  {seconds / baseline:5.1f} x python -c pass")


if __name__ == "__main__":
    main()
