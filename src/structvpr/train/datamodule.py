"""LightningDataModule for Stage I: P x K place-labelled training batches and a query/database val split.

Batches are dicts from `structvpr.data.training_set.PlaceTrainingSet`: 'image' float32 [B, 3, H, W]
(normalised), 'place' int64 [B], 'index' int64 [B], and for the seg branch 'label_map' uint8
[B, H, W] (Cityscapes trainIds, nearest-resized to the model input). Validation items are the
split's database images followed by its queries; 'index' is that position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from structvpr.config import Config, DatasetSource
from structvpr.data.place_dataset import DatasetError, PlaceDataset
from structvpr.data.samplers import PlaceBatchSampler
from structvpr.data.training_set import PlaceTrainingSet

# Places closer than this never share a batch, so two labels of a batch are never positives.
BATCH_PLACE_SEPARATION_M = 25.0


def open_source(source: DatasetSource, role: str) -> PlaceDataset:
    """Open a configured dataset split (`data.train` or `data.val`) and apply its `index_range`."""
    from structvpr.data.layouts import open_dataset

    if not source.path:
        raise DatasetError(f"no {role} dataset configured: set data.{role}.path")
    dataset = open_dataset(source.path, layout=source.layout, split=source.split, **source.options)
    return dataset if source.index_range is None else slice_dataset(dataset, source.index_range)


def slice_dataset(dataset: PlaceDataset, index_range: Sequence[int]) -> PlaceDataset:
    """Keep positions [start, end) of both the database and the query list (frame-aligned sequences).

    Positives are then recomputed from the kept coordinates, so explicit ground-truth lists are refused.
    """
    if len(index_range) != 2 or not 0 <= index_range[0] < index_range[1]:
        raise DatasetError(
            f"{dataset.root}: index_range must be [start, end) with 0 <= start < end, got {list(index_range)}"
        )
    if dataset.ground_truth is not None or dataset.database_coords is None or dataset.query_coords is None:
        raise DatasetError(
            f"{dataset.root}: index_range needs a dataset with coordinates "
            "(explicit ground-truth lists cannot be sliced)"
        )
    start, end = int(index_range[0]), int(index_range[1])
    kept = dataclasses.replace(
        dataset,
        split=f"{dataset.split} [{start}:{end}]",
        database_paths=dataset.database_paths[start:end],
        query_paths=dataset.query_paths[start:end],
        database_coords=dataset.database_coords[start:end],
        query_coords=dataset.query_coords[start:end],
    )
    if kept.num_database == 0 or kept.num_queries == 0:
        raise DatasetError(
            f"{dataset.root}: index_range {list(index_range)} leaves no database or no "
            f"query images ({dataset.num_database} database, {dataset.num_queries} queries)"
        )
    return kept


class VPRDataModule(L.LightningDataModule):
    """Training: place-labelled images of `data.train` (database + queries) in P x K batches.
    Validation: `data.val` database then queries, sharded over DDP ranks."""

    def __init__(self, config: Config, branch: str = "rgb") -> None:
        super().__init__()
        self.config = config
        self.with_labels = branch == "seg"
        self.val_dataset: PlaceDataset | None = None
        self.val_positives: list[np.ndarray] = []
        self.train_set: PlaceTrainingSet | None = None
        self.train_description = ""

    @property
    def num_val_items(self) -> int:
        """Database + query images of the validation split."""
        return self.val_dataset.num_database + self.val_dataset.num_queries

    def _image_options(self) -> dict:
        model = self.config.model
        return {"image_size": model.image_size, "mean": model.mean, "std": model.std, "with_labels": self.with_labels}

    def setup(self, stage: str | None = None) -> None:
        data = self.config.data
        if self.val_dataset is None:
            self.val_dataset = open_source(data.val, "val")
            self.val_positives = self.val_dataset.positives_per_query(data.val_threshold_m)
        if stage in (None, "fit") and self.train_set is None:
            train_dataset = open_source(data.train, "train")
            self.train_set = PlaceTrainingSet.from_place_dataset(
                train_dataset, positive_radius_m=data.train_positive_m, **self._image_options()
            )
            self.train_description = (
                f"{train_dataset.summary()}; training on {len(self.train_set)} images "
                f"of {self.train_set.num_places} places (<= {data.train_positive_m:g} m)"
            )

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return int(self.trainer.global_rank), int(self.trainer.world_size)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_and_world()
        train = self.config.train
        sampler = PlaceBatchSampler(
            self.train_set.places,
            train.places_per_batch,
            train.images_per_place,
            seed=train.seed,
            batches_per_epoch=train.batches_per_epoch,
            centres=self.train_set.centres,
            min_separation_m=BATCH_PLACE_SEPARATION_M,
            rank=rank,
            world_size=world,
        )
        workers = self.config.data.num_workers
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0)

    def val_dataloader(self) -> DataLoader:
        dataset = self.val_dataset
        paths = list(dataset.database_paths) + list(dataset.query_paths)
        # Each item its own "place": the set is only used for decoding, positives come from the split.
        items = PlaceTrainingSet(paths, np.arange(len(paths)), **self._image_options())
        rank, world = self._rank_and_world()
        # Shards are padded with repeats; the module gathers them and de-duplicates by 'index'.
        sampler = DistributedSampler(items, num_replicas=world, rank=rank, shuffle=False) if world > 1 else None
        return DataLoader(
            items,
            batch_size=self.config.data.val_batch_size,
            sampler=sampler,
            shuffle=False,
            num_workers=self.config.data.num_workers,
        )


class Stage2DataModule(VPRDataModule):
    """The Stage I RGB data module whose training batches also carry 'label_map' (trainIds [B, H, W]).

    The partition reads its training set too, so the teacher cache rows follow Stage II's item order.
    """

    def __init__(self, config: Config) -> None:
        super().__init__(config, "rgb")
        self.with_labels = True  # validation stays RGB-only: the flag is read when the sets are built

    def val_dataloader(self) -> DataLoader:
        self.with_labels = False
        try:
            return super().val_dataloader()
        finally:
            self.with_labels = True
