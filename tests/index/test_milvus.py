"""Milvus Lite round-trip: a real FAISS index copied into a Milvus Lite file gives FAISS flat's top-k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from structvpr.index import PlaceIndex
from structvpr.index.milvus import MilvusPlaceIndex


def test_milvus_lite_round_trip_matches_faiss_flat(corridor_descriptors, tmp_path: Path) -> None:
    database, queries, database_paths = corridor_descriptors
    poses = np.stack([np.zeros(len(database)), np.arange(len(database)) * 2.5], axis=1)
    faiss_index = PlaceIndex.build(
        database, "flat", metadata={"poses": poses, "paths": [str(path) for path in database_paths]}
    )
    faiss_index.save(tmp_path / "faiss_map")
    expected = faiss_index.search(queries, k=5)

    reloaded = PlaceIndex.load(tmp_path / "faiss_map")
    milvus = MilvusPlaceIndex.from_place_index(
        reloaded, kind="flat", uri=str(tmp_path / "map.db"), collection="corridor"
    )
    milvus.save(tmp_path / "milvus_map.json")
    milvus.close()

    loaded = MilvusPlaceIndex.load(tmp_path / "milvus_map.json")
    assert len(loaded) == len(database)
    result = loaded.search(queries, k=5)
    np.testing.assert_array_equal(result.ids, expected.ids)
    np.testing.assert_allclose(result.scores, expected.scores, atol=1e-5)
    # Poses and image paths travel in the same collection.
    np.testing.assert_allclose(loaded.metadata_at("poses", result.ids[:, 0]), poses[expected.ids[:, 0]])
    assert loaded.metadata_at("paths", result.ids[:3, 0]).tolist() == [
        str(database_paths[i]) for i in expected.ids[:3, 0]
    ]

    # An approximate Milvus index (HNSW) with exact re-ranking agrees on the top-1.
    hnsw = MilvusPlaceIndex.build(database, "hnsw", uri=str(tmp_path / "map.db"), collection="corridor_hnsw")
    reranked = hnsw.search(queries, k=5, ef_search=64, rerank=20)
    np.testing.assert_array_equal(reranked.ids[:, 0], expected.ids[:, 0])
    with pytest.raises(ValueError, match="already exists"):
        MilvusPlaceIndex.build(database, "flat", uri=str(tmp_path / "map.db"), collection="corridor_hnsw")
    with pytest.raises(ValueError, match="does not implement ivfpq"):
        MilvusPlaceIndex.build(database, "ivfpq", uri=str(tmp_path / "other.db"))
    hnsw.close()
    loaded.close()
