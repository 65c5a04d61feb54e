"""P places x K images batches for metric learning, seeded, shardable across DDP ranks.

Each batch holds `places_per_batch` (P) distinct places and `images_per_place` (K) images of each.
Places with fewer than K images are drawn with replacement (`small_places='replacement'`,
default: no place is wasted) or left out (`small_places='skip'`). When place centres are given,
places of one batch are at least `min_separation_m` (25 m) apart, so that two labels in a batch
are never true positives of each other (grid places can be neighbours closer than that).

With Lightning: `DataLoader(dataset, batch_sampler=PlaceBatchSampler(...))`. Lightning calls
`set_epoch` through `batch_sampler.sampler` every epoch. Under DDP pass
`Trainer(use_distributed_sampler=False)`: every rank draws the same global batches from the
seed and keeps every world_size-th one (rank and world size come from torch.distributed
unless given).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler


class _EpochHook:
    """What Lightning finds at `batch_sampler.sampler`: forwards set_epoch to the batch sampler."""

    def __init__(self, owner: PlaceBatchSampler) -> None:
        self._owner = owner

    def set_epoch(self, epoch: int) -> None:
        self._owner.set_epoch(epoch)


class PlaceBatchSampler(Sampler[list[int]]):
    """Yields lists of P x K dataset indices (place-major: K images of place 1, then place 2, ...)."""

    def __init__(
        self,
        places: Sequence[int],
        places_per_batch: int,
        images_per_place: int,
        *,
        seed: int = 0,
        batches_per_epoch: int | None = None,
        small_places: str = "replacement",
        centres: np.ndarray | None = None,
        min_separation_m: float = 25.0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        """`places`: int place label per dataset index; `centres`: float [num labels, 2] metres.

        `batches_per_epoch` counts batches per rank (default: enough for every eligible place
        to appear about once per epoch over all ranks).
        """
        if places_per_batch < 1 or images_per_place < 1:
            raise ValueError("places_per_batch and images_per_place must be >= 1")
        if small_places not in ("replacement", "skip"):
            raise ValueError(f"small_places must be 'replacement' or 'skip', got {small_places!r}")
        place_labels = np.asarray(places, dtype=np.int64).reshape(-1)
        order = np.argsort(place_labels, kind="stable")
        labels, starts = np.unique(place_labels[order], return_index=True)
        members = np.split(order, starts[1:]) if len(order) else []
        self.indices_of_place = {int(label): group for label, group in zip(labels, members, strict=False)}
        self.eligible = np.array(
            [
                label
                for label, group in self.indices_of_place.items()
                if small_places == "replacement" or len(group) >= images_per_place
            ],
            dtype=np.int64,
        )
        if len(self.eligible) < places_per_batch:
            raise ValueError(
                f"only {len(self.eligible)} places can fill a batch (small_places="
                f"{small_places!r}, K={images_per_place}); need P={places_per_batch}"
            )
        self.places_per_batch = places_per_batch
        self.images_per_place = images_per_place
        self.batch_size = places_per_batch * images_per_place
        self.seed = seed
        self.centres = None if centres is None else np.asarray(centres, dtype=np.float64)
        self.min_separation_m = min_separation_m
        self._batches_per_epoch = batches_per_epoch
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self.sampler = _EpochHook(self)

    def _distributed(self) -> tuple[int, int]:
        if self._world_size is not None:
            rank, world_size = int(self._rank or 0), int(self._world_size)
        elif dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        return rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches __iter__ yields (same seed + epoch -> same batches)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self._batches_per_epoch is not None:
            return int(self._batches_per_epoch)
        _, world_size = self._distributed()
        return max(1, len(self.eligible) // (self.places_per_batch * world_size))

    def _too_close(self, candidate: int, chosen: list[int]) -> bool:
        if self.centres is None or not chosen or not self.min_separation_m:
            return False
        gaps = np.linalg.norm(self.centres[chosen] - self.centres[candidate], axis=1)
        return bool((gaps < self.min_separation_m).any())

    def _draw_places(self, rng: np.random.Generator, queue: deque) -> list[int]:
        """P places for one batch from a stream of shuffled places; skipped ones go first next time."""
        chosen: list[int] = []
        deferred: list[int] = []
        attempts = 0
        while len(chosen) < self.places_per_batch:
            if not queue:
                queue.extend(int(p) for p in rng.permutation(self.eligible))
            candidate = queue.popleft()
            attempts += 1
            if attempts > 3 * len(self.eligible) + self.places_per_batch:
                raise ValueError(
                    f"cannot find {self.places_per_batch} places at least "
                    f"{self.min_separation_m} m apart; lower P or min_separation_m"
                )
            if candidate in chosen or self._too_close(candidate, chosen):
                deferred.append(candidate)
                continue
            chosen.append(candidate)
        queue.extendleft(reversed(deferred))
        return chosen

    def _images_of(self, rng: np.random.Generator, place: int) -> list[int]:
        group = self.indices_of_place[place]
        replace = len(group) < self.images_per_place
        return [int(i) for i in rng.choice(group, self.images_per_place, replace=replace)]

    def __iter__(self) -> Iterator[list[int]]:
        rank, world_size = self._distributed()
        rng = np.random.default_rng([self.seed, self.epoch])
        queue: deque = deque()
        # Every rank draws the same global batches and keeps its own share.
        for batch_number in range(len(self) * world_size):
            places = self._draw_places(rng, queue)
            batch = [index for place in places for index in self._images_of(rng, place)]
            if batch_number % world_size == rank:
                yield batch

    @property
    def num_places(self) -> int:
        """Places that can appear in batches."""
        return len(self.eligible)
