"""Run every benchmarks/bench_*.py in turn with this interpreter and print their output (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def main() -> int:
    scripts = sorted(Path(__file__).resolve().parent.glob("bench_*.py"))
    failures = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        completed = subprocess.run([sys.executable, str(script)], check=False)
        if completed.returncode != 0:
            failures.append(script.name)
            print(f"!! {script.name} exited with {completed.returncode}", flush=True)
    print(
        f"== {len(scripts) - len(failures)}/{len(scripts)} benchmarks finished"
        + (f"; failed: {', '.join(failures)}" if failures else "")
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
