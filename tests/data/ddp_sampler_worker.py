"""A spawned DDP rank for the sampler test; kept apart so that children import little."""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from structvpr.data.samplers import PlaceBatchSampler


def write_rank_batches(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    """Join a gloo group, draw one epoch of P=3 x K=2 batches (rank from dist), save them."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        sampler = PlaceBatchSampler(np.repeat(np.arange(24), 2), 3, 2, seed=5)
        np.save(f"{out_dir}/rank{rank}.npy", np.array(list(sampler)))
    finally:
        dist.destroy_process_group()
