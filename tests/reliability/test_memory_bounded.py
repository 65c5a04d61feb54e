"""Descriptor extraction for a large database streams into a memory map: peak memory stays bounded.

Measured in a child process (a clean heap): the peak of RssAnon (anonymous memory, sampled every
millisecond from /proc/self/status) and tracemalloc's peak (NumPy and Python allocations) while
`compute_descriptors(..., out_file=...)` describes N images into D-dimensional rows. The memory-
mapped output is file-backed page cache (reclaimable, written back to disk), so it is counted
separately: ru_maxrss includes it and is reported, not bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from faults import child_env
from PIL import Image

NUM_IMAGES = 16384
DIM = 4096  # N x D x 4 bytes = 256 MiB of descriptors

_MEASURE = textwrap.dedent("""
    import json, resource, sys, threading, time, tracemalloc
    from pathlib import Path
    import numpy as np, torch
    from torch import nn
    from structvpr.evaluate.descriptors import DescribeOptions, compute_descriptors

    image, out_file, count, dim = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

    def rss_anon() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no RssAnon in /proc/self/status")

    torch.manual_seed(0)
    # A real (tiny) model: [B, 3, 8, 8] -> [B, dim], L2-normalised like every VPR head.
    linear = nn.Linear(3 * 8 * 8, dim)
    model = nn.Sequential(nn.Flatten(), linear)
    paths = [image] * count  # one tiny file read `count` times: the test is about the output side
    peak, running = [rss_anon()], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], rss_anon())
            time.sleep(0.001)

    options = DescribeOptions(image_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, batch_size=256, progress=False)
    warm = compute_descriptors(model, paths[:64], options)  # import/allocator warm-up
    del warm
    baseline = rss_anon()
    peak[0] = baseline
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    start = time.perf_counter()
    result = compute_descriptors(model, paths, options, out_file=out_file)
    seconds = time.perf_counter() - start
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    running[0] = False
    sampler.join()
    with torch.no_grad():
        from structvpr.data.images import image_transform, load_rgb
        expected = model(image_transform((8, 8), (0.5,) * 3, (0.5,) * 3)(load_rgb(image))[None]).numpy()[0]
    print(json.dumps({
        "type": type(result).__name__, "shape": list(result.shape), "dtype": str(result.dtype),
        "first_row_error": float(np.abs(result[0] - expected).max()),
        "last_row_error": float(np.abs(result[-1] - expected).max()),
        "anon_growth": peak[0] - baseline, "traced_peak": traced_peak, "seconds": seconds,
        "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


@pytest.mark.slow  # ~16k image decodes (~10 s on two shared cores)
def test_descriptor_extraction_of_a_large_database_keeps_memory_bounded(tmp_path: Path) -> None:
    image = tmp_path / "tiny.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(image)
    out_file = tmp_path / "database.npy"
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(image), str(out_file), str(NUM_IMAGES), str(DIM)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    full_size = NUM_IMAGES * DIM * 4
    print(
        f"descriptors {full_size / 2**20:.0f} MiB; anonymous memory growth "
        f"{measured['anon_growth'] / 2**20:.1f} MiB; tracemalloc peak {measured['traced_peak'] / 2**20:.1f} MiB; "
        f"ru_maxrss {measured['max_rss'] / 2**20:.0f} MiB; {measured['seconds']:.1f} s"
    )
    assert measured["type"] == "memmap" and measured["shape"] == [NUM_IMAGES, DIM] and measured["dtype"] == "float32"
    assert measured["first_row_error"] < 1e-5 and measured["last_row_error"] < 1e-5
    # One batch is 256 x 4096 x 4 = 4 MiB: memory follows the batch, not the database.
    assert measured["anon_growth"] < full_size / 6, measured
    assert measured["traced_peak"] < full_size / 16, measured
    on_disk = np.load(out_file, mmap_mode="r", allow_pickle=False)
    assert on_disk.shape == (NUM_IMAGES, DIM)
    assert not list(tmp_path.glob(".*.tmp")), "the temporary descriptor file was left behind"
