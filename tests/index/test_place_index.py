"""PlaceIndex: every kind finds the exact top-1 on easy data, save/load, metadata, re-ranking, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from structvpr.index import IndexFileError, ModelMismatchError, PlaceIndex


def clustered_descriptors(count: int, dim: int, clusters: int, seed: int = 0, spread: float = 0.3) -> np.ndarray:
    """Unit vectors around `clusters` random centres: float32 [count, dim]."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    points = centres[rng.integers(0, clusters, count)] + spread * rng.standard_normal((count, dim)).astype(np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


KIND_OPTIONS = {
    "flat": {},
    "ivfflat": {"nlist": 16},
    # 6-bit codes keep PQ training fast and within FAISS' points-per-centroid rule on 3,000 rows.
    "ivfpq": {"nlist": 16, "pq_m": 16, "pq_nbits": 6},
    "ivfpq_opq": {"nlist": 16, "pq_m": 16, "pq_nbits": 6, "opq": True},
    "hnsw": {"hnsw_m": 16},
}


@pytest.fixture(scope="module")
def easy_data() -> tuple[np.ndarray, np.ndarray]:
    """3,000 clustered database vectors and 50 queries that are slightly jittered database rows."""
    database = clustered_descriptors(3000, 64, clusters=30, seed=1)
    rng = np.random.default_rng(2)
    queries = database[:50] + 0.02 * rng.standard_normal((50, 64)).astype(np.float32)
    return database, (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name == "ivfpq_opq" else name for name in KIND_OPTIONS]
)  # OPQ training alone takes ~8 s
def test_each_kind_finds_exact_top1_on_easy_data(name: str, easy_data, tmp_path: Path) -> None:
    database, queries = easy_data
    kind = name.split("_")[0]
    index = PlaceIndex.build(database, kind=kind, **KIND_OPTIONS[name])
    exact_top1 = np.argmax(queries @ database.T, axis=1)
    assert np.array_equal(exact_top1, np.arange(50))  # the data really is easy
    scores, ids = index.search(queries, k=3, nprobe=4, rerank=20 if kind == "ivfpq" else None)
    assert ids.shape == (50, 3) and scores.dtype == np.float32
    assert np.array_equal(ids[:, 0], exact_top1)
    # Scores are cosine similarities, ranked high to low.
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    np.testing.assert_allclose(scores[:, 0], np.sum(queries * database[:50], axis=1), atol=0.05)

    index.save(tmp_path / "index")
    loaded = PlaceIndex.load(tmp_path / "index")
    scores2, ids2 = loaded.search(queries, k=3, nprobe=4, rerank=20 if kind == "ivfpq" else None)
    assert np.array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, atol=1e-6)


def test_ids_metadata_add_and_round_trip(tmp_path: Path) -> None:
    database = clustered_descriptors(400, 32, clusters=8, seed=3)
    poses = np.random.default_rng(0).uniform(0, 1000, (400, 2))
    paths = [f"db/{i:05d}.jpg" for i in range(400)]
    ids = np.arange(400, dtype=np.int64) * 10 + 7
    index = PlaceIndex.build(
        database[:300], "flat", metadata={"poses": poses[:300], "paths": paths[:300]}, ids=ids[:300]
    )
    index.add(database[300:], ids=ids[300:], metadata={"poses": poses[300:], "paths": paths[300:]})
    assert len(index) == 400
    result = index.search(database[[5, 350]], k=1)
    assert list(result.ids[:, 0]) == [57, 3507]
    np.testing.assert_array_equal(index.metadata_at("poses", result.positions[:, 0]), poses[[5, 350]])

    index.save(tmp_path / "map")
    index.save(tmp_path / "map")  # replacing an existing index works
    assert sorted(p.name for p in (tmp_path / "map").iterdir()) == [
        "ids.npy",
        "index.faiss",
        "manifest.json",
        "meta_paths.npy",
        "meta_poses.npy",
    ]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers
    loaded = PlaceIndex.load(tmp_path / "map")
    again = loaded.search(database[[5, 350]], k=1)
    assert list(again.ids[:, 0]) == [57, 3507]
    assert list(loaded.metadata_at("paths", again.positions[:, 0])) == ["db/00005.jpg", "db/00350.jpg"]


def test_reranking_recovers_exact_order_of_pq_candidates() -> None:
    """Near-duplicates: PQ codes alone confuse them, exact re-ranking of 50 candidates does not."""
    rng = np.random.default_rng(4)
    base = clustered_descriptors(1500, 64, clusters=15, seed=5)
    near = base + 0.01 * rng.standard_normal(base.shape).astype(np.float32)
    database = np.concatenate([base, near / np.linalg.norm(near, axis=1, keepdims=True)])
    queries = database[:100] + 0.005 * rng.standard_normal((100, 64)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact_top1 = np.argmax(queries @ database.T, axis=1)
    index = PlaceIndex.build(database, "ivfpq", nlist=8, pq_m=8, pq_nbits=6)
    plain = index.search(queries, k=1, nprobe=8).ids[:, 0]
    reranked = index.search(queries, k=1, nprobe=8, rerank=50).ids[:, 0]
    assert np.mean(reranked == exact_top1) == 1.0
    assert np.mean(plain == exact_top1) < 0.9  # the codes alone really are lossy here


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    database = clustered_descriptors(100, 16, clusters=4)
    with pytest.raises(ValueError, match="unknown index kind"):
        PlaceIndex.build(database, kind="annoy")
    with pytest.raises(ValueError, match="L2-normalised"):
        PlaceIndex.build(database * 3)
    normalised = PlaceIndex.build(database * 3, normalize=True)
    assert normalised.search(database[:1], k=1).ids[0, 0] == 0
    index = PlaceIndex.build(database)
    with pytest.raises(ValueError, match="dimension 8 does not match"):
        index.search(np.ones((1, 8), np.float32) / np.sqrt(8), k=1)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full((1, 16), np.nan, np.float32), k=1)
    with pytest.raises(ValueError, match="2 rows for 100"):
        PlaceIndex.build(database, metadata={"poses": np.zeros((2, 2))})
    with pytest.raises(IndexFileError, match="no manifest.json"):
        PlaceIndex.load(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(IndexFileError, match="not a structvpr place index"):
        PlaceIndex.load(tmp_path)
    # k larger than the index: at most len(index) columns, never padding (issue 13 item 4)
    small = PlaceIndex.build(database[:3])
    result = small.search(database[:1], k=5)
    assert result.ids.shape == (1, 3) and sorted(result.ids[0]) == [0, 1, 2] and result.ids[0, 0] == 0
    assert np.isfinite(result.scores).all()


def test_k_beyond_the_index_size_returns_every_row_once_and_parameters_below_one_are_refused(
    corridor_descriptors,
) -> None:
    """Issue 13 item 4: k=100000 on the 111-image Corridor map gave 99889 padded columns (id -1,
    score -inf) that `paths[ids]` silently turned into the last image; --ef-search -5 missed the top-1."""
    database, queries, paths = corridor_descriptors
    for kind, options in (("flat", {}), ("hnsw", {"ef_search": 4}), ("ivfflat", {"nprobe": 2})):
        index = PlaceIndex.build(database, kind=kind, metadata={"paths": [p.name for p in paths]})
        result = index.search(queries[:4], k=100_000, **options)
        assert result.ids.shape == (4, len(database)), kind
        if kind == "flat":  # exact: every row exactly once, best first
            assert all(sorted(row) == list(range(len(database))) for row in result.ids)
            np.testing.assert_array_equal(result.ids[:, 0], (queries[:4] @ database.T).argmax(axis=1))
        for name, value in (("k", 0), ("ef_search", -5), ("nprobe", 0), ("rerank", -1)):
            with pytest.raises(ValueError, match=f"{name.replace('_', '-')} must be >= 1, got {value}"):
                index.search(queries[:1], **{"k": 3, name: value})


def test_an_empty_descriptor_array_is_refused_with_a_clear_error() -> None:
    """Issue 13 item 8: PlaceIndex.build(model.describe([])) raised IndexError: index 0 is out of bounds."""
    with pytest.raises(ValueError, match=r"no rows \(shape \(0, 32\)\): an index needs at least one descriptor"):
        PlaceIndex.build(np.empty((0, 32), np.float32))
    for kind in ("hnsw", "ivfpq"):
        with pytest.raises(ValueError, match="at least one descriptor"):
            PlaceIndex.build(np.empty((0, 32), np.float32), kind=kind)


def test_a_model_with_another_hash_is_refused_naming_both_unless_allowed() -> None:
    """Issue 13 item 3 (API side): an index refuses a model whose sha256 differs from the recorded one."""
    index = PlaceIndex.build(clustered_descriptors(20, 16, clusters=2))
    index.check_model("f" * 64)  # records no model: any model is accepted
    index.info = {"model": "/runs/a/model.pt", "model_sha256": "a" * 64}
    index.check_model("a" * 64, "a.pt")
    with pytest.raises(ModelMismatchError, match=r"b\.pt: not the model .*/runs/a/model\.pt, sha256 aaaaaaaaaaaa"):
        index.check_model("b" * 64, "b.pt")
    index.check_model("b" * 64, "b.pt", allow_mismatch=True)
