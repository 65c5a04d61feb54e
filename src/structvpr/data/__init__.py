"""Datasets: layouts on disk -> PlaceDataset, images, training batches, the synthetic town."""
