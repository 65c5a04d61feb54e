"""P places x K images batches: structure, seeding, small places, separation, DDP shards, Lightning."""

from __future__ import annotations

from collections import Counter

import lightning
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from structvpr.data.samplers import PlaceBatchSampler


def labels(counts: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(counts)), counts)


def test_batches_hold_p_distinct_places_with_k_images_each() -> None:
    places = labels([5] * 30)
    sampler = PlaceBatchSampler(places, places_per_batch=6, images_per_place=4, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    for batch in batches:
        assert len(batch) == 24 and len(set(batch)) == 24  # >= K images: drawn without replacement
        per_place = Counter(int(places[i]) for i in batch)
        assert len(per_place) == 6 and set(per_place.values()) == {4}
    # Every place appears once per epoch when P divides the place count.
    assert sorted(int(places[b[0]]) for batch in batches for b in [batch[i : i + 4] for i in range(0, 24, 4)]) == list(
        range(30)
    )


def test_seed_and_epoch_decide_the_batches() -> None:
    places = labels([3] * 20)
    first = PlaceBatchSampler(places, 4, 2, seed=7)
    assert list(first) == list(PlaceBatchSampler(places, 4, 2, seed=7))
    assert list(first) != list(PlaceBatchSampler(places, 4, 2, seed=8))
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    first.sampler.set_epoch(0)  # the hook Lightning calls
    assert list(first) == epoch0


def test_small_places_with_replacement_or_skipped() -> None:
    places = labels([1, 1, 4, 4, 4])
    with_replacement = PlaceBatchSampler(places, 5, 3, seed=0, batches_per_epoch=3)
    assert with_replacement.num_places == 5
    batch = next(iter(with_replacement))
    assert Counter(int(places[i]) for i in batch) == {0: 3, 1: 3, 2: 3, 3: 3, 4: 3}
    skipping = PlaceBatchSampler(places, 3, 3, small_places="skip", batches_per_epoch=4)
    assert skipping.num_places == 3
    assert all({int(places[i]) for i in b} == {2, 3, 4} for b in skipping)
    with pytest.raises(ValueError, match="only 3 places can fill a batch"):
        PlaceBatchSampler(places, 4, 3, small_places="skip")


def test_places_of_a_batch_are_far_apart() -> None:
    # 40 places on a line 8 m apart: neighbours closer than 25 m never share a batch.
    centres = np.stack([np.arange(40) * 8.0, np.zeros(40)], axis=1)
    places = labels([2] * 40)
    sampler = PlaceBatchSampler(places, 5, 2, seed=1, centres=centres, batches_per_epoch=20)
    for batch in sampler:
        chosen = sorted({int(places[i]) for i in batch})
        assert len(chosen) == 5
        assert np.diff(centres[chosen, 0]).min() >= 25.0
    crowded = PlaceBatchSampler(labels([2] * 4), 3, 2, centres=np.zeros((4, 2)))
    with pytest.raises(ValueError, match="cannot find 3 places at least 25.0 m apart"):
        next(iter(crowded))


def test_ranks_get_disjoint_shares_of_the_global_batches() -> None:
    places = labels([2] * 24)
    single = list(PlaceBatchSampler(places, 3, 2, seed=5, batches_per_epoch=8))
    shards = [
        list(PlaceBatchSampler(places, 3, 2, seed=5, batches_per_epoch=4, rank=r, world_size=2)) for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == 4
    assert shards[0] == single[0::2] and shards[1] == single[1::2]
    default_length = PlaceBatchSampler(places, 3, 2, rank=1, world_size=2)
    assert len(default_length) == 4  # 24 places / (3 places x 2 ranks)


class _Points(Dataset):
    """Place p's images are points near p * 10 on a line: a model can learn them."""

    def __init__(self, places: np.ndarray) -> None:
        self.places = places
        self.x = torch.tensor(
            places * 10.0 + np.random.default_rng(0).normal(0, 0.1, len(places)), dtype=torch.float32
        )[:, None]

    def __len__(self) -> int:
        return len(self.places)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.x[index], "place": int(self.places[index]), "index": index}


class _Recorder(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 2)
        self.seen: list[list[int]] = []

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        self.seen.append(batch["index"].tolist())
        return self.layer(batch["image"]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trains_on_place_batches_and_advances_epochs(tmp_path) -> None:
    places = labels([3] * 12)
    sampler = PlaceBatchSampler(places, 4, 2, seed=0)
    loader = DataLoader(_Points(places), batch_sampler=sampler)
    module = _Recorder()
    trainer = lightning.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, loader)
    assert len(module.seen) == 2 * len(sampler) == 6
    for indices in module.seen:
        assert Counter(int(places[i]) for i in indices).most_common(1)[0][1] == 2
    sampler.set_epoch(0)
    assert module.seen[:3] == list(sampler)
    sampler.set_epoch(1)
    assert module.seen[3:] == list(sampler)  # Lightning set epoch 1 through batch_sampler.sampler


@pytest.mark.slow
def test_real_process_group_shards_batches(tmp_path) -> None:
    import torch.multiprocessing as mp
    from ddp_sampler_worker import write_rank_batches

    mp.spawn(write_rank_batches, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    shards = [np.load(tmp_path / f"rank{r}.npy").tolist() for r in range(2)]
    single = list(PlaceBatchSampler(labels([2] * 24), 3, 2, seed=5, batches_per_epoch=8))
    assert shards[0] == single[0::2] and shards[1] == single[1::2]
