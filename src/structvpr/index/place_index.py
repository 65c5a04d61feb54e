"""PlaceIndex: FAISS nearest-neighbour search over L2-normalised place descriptors.

Kinds: ``flat`` (exact inner product), ``ivfflat``, ``ivfpq`` (optionally with an OPQ rotation) and
``hnsw``. Scores are cosine similarities in [-1, 1] for every kind, so results from different
kinds can be compared. An index on disk is a folder (``manifest.json``, ``index.faiss``,
``ids.npy``, one ``meta_<key>.npy`` per metadata array and, for re-ranking, ``vectors.npy``); it is
written to a staging folder and swapped in, and it never contains pickled objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from structvpr.index.parameters import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    KINDS,
    check_build_parameters,
    check_positive,
    default_nlist,
    training_sample_size,
)
from structvpr.io_utils import FOLDER_MODE, atomic_write, atomic_write_bytes, atomic_write_text

__all__ = [
    "DEFAULT_EF_SEARCH",
    "DEFAULT_NPROBE",
    "KINDS",
    "IndexFileError",
    "ModelMismatchError",
    "PlaceIndex",
    "SearchResult",
    "check_descriptors",
    "check_metadata",
    "default_nlist",
    "load_npy",
    "save_npy",
]

FORMAT_VERSION = 1
_NORM_TOLERANCE = 1e-3


class IndexFileError(ValueError):
    """An index folder is missing, incomplete or not a structvpr index; the message names it."""


class ModelMismatchError(ValueError):
    """A model is not the one an index was built with (its sha256 differs from the recorded one)."""


@dataclass
class SearchResult:
    """Top-k neighbours of each query.

    scores: float32 [Q, k'] cosine similarity (higher is closer), k' = min(k, len(index)).
    ids: int64 [Q, k'] user ids.
    positions: int64 [Q, k'] row positions in the index, for `PlaceIndex.metadata_at`.
    An approximate kind (ivf*, hnsw) that finds fewer than k' neighbours marks the missing ones
    with id and position -1 and score -inf.
    Unpacks as ``scores, ids = index.search(...)``.
    """

    scores: np.ndarray
    ids: np.ndarray
    positions: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.scores, self.ids))


def check_descriptors(
    descriptors: Any, dim: int | None = None, name: str = "descriptors", normalize: bool = False
) -> np.ndarray:
    """Return `descriptors` as C-contiguous float32 [N, D]; raise ValueError if not L2-normalised.

    With normalize=True rows are L2-normalised instead of checked (zero rows are rejected).
    """
    array = np.ascontiguousarray(np.asarray(descriptors, dtype=np.float32))
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] == 0:
        raise ValueError(f"{name}: expected a float array of shape [N, D], got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name}: dimension {array.shape[1]} does not match the index dimension {dim}")
    # Chunked so that a 1M x 256 array does not need a second 1 GB temporary.
    for start in range(0, len(array), 65536):
        chunk = array[start : start + 65536]
        if not np.isfinite(chunk).all():
            raise ValueError(f"{name}: contains NaN or infinite values")
        norms = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
        if normalize:
            if (norms == 0).any():
                raise ValueError(f"{name}: contains all-zero rows that cannot be normalised")
            if start == 0:
                array = array.copy()  # never normalise the caller's array in place
                chunk = array[start : start + 65536]
            chunk /= norms[:, None]
        elif np.abs(norms - 1.0).max(initial=0.0) > _NORM_TOLERANCE:
            raise ValueError(
                f"{name}: rows must be L2-normalised (found norms from {norms.min():.4f} "
                f"to {norms.max():.4f}); pass normalize=True to normalise them"
            )
    return array


def _gpu_available() -> bool:
    return hasattr(faiss, "index_cpu_to_all_gpus") and hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


class PlaceIndex:
    """A FAISS index over place descriptors with user ids, per-row metadata (poses, paths) and
    optional stored vectors for exact re-ranking.

    Build with `PlaceIndex.build`, grow with `add`, query with `search`, persist with `save`/`load`.
    """

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        params: dict[str, Any],
        ids: np.ndarray,
        metadata: dict[str, np.ndarray],
        vectors: np.ndarray | None,
        use_gpu: bool | str,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.kind = kind
        self.params = params
        self.ids = ids
        self.metadata = metadata
        self.vectors = vectors
        self.use_gpu = use_gpu
        # Free-form JSON-safe provenance saved in the manifest (model file, hash, image folder).
        self.info: dict[str, Any] = dict(info or {})
        self._gpu_index: faiss.Index | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        descriptors: Any,
        kind: str = "flat",
        metadata: Mapping[str, Any] | None = None,
        ids: Any = None,
        *,
        nlist: int | None = None,
        pq_m: int = 32,
        pq_nbits: int = 8,
        opq: bool = False,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        train_size: int | None = None,
        store_vectors: bool | None = None,
        normalize: bool = False,
        use_gpu: bool | str = "auto",
        seed: int = 0,
    ) -> PlaceIndex:
        """Build an index of `descriptors` float32 [N, D] (L2-normalised; or pass normalize=True).

        kind: "flat" | "ivfflat" | "ivfpq" | "hnsw". `metadata` maps a name (e.g. "poses" float64
        [N, 2] UTM metres, "paths" strings) to an array with N rows. `ids` int64 [N] (default 0..N-1).
        nlist: IVF lists (default `default_nlist(N)`); pq_m bytes per code with pq_nbits=8;
        opq: learn an OPQ rotation before PQ; hnsw_m / ef_construction: HNSW graph degree and build
        breadth. The quantiser is trained on a random sample of `train_size` rows (default
        min(N, 64 * nlist, 100k)). store_vectors keeps the raw descriptors for exact re-ranking
        (default: only for ivfpq, whose codes are lossy). use_gpu: "auto" uses all GPUs when
        faiss-gpu finds one (HNSW stays on the CPU; FAISS has no GPU HNSW).
        """
        vectors = check_descriptors(descriptors, normalize=normalize)
        count, dim = vectors.shape
        if count == 0:
            raise ValueError(
                f"descriptors: no rows (shape {vectors.shape}): an index needs at least one descriptor "
                "(was the image list empty?)"
            )
        check_build_parameters(
            kind,
            count,
            dim,
            nlist=nlist,
            pq_m=pq_m,
            pq_nbits=pq_nbits,
            hnsw_m=hnsw_m,
            ef_construction=ef_construction,
            train_size=train_size,
        )
        params: dict[str, Any] = {"dim": dim}
        if kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            if kind in ("ivfflat", "ivfpq"):
                nlist = int(nlist or default_nlist(count))
                params["nlist"] = nlist
            if kind == "ivfpq":
                params.update(pq_m=pq_m, pq_nbits=pq_nbits, opq=bool(opq))
                prefix = f"OPQ{pq_m}_{dim}," if opq else ""
                factory = f"{prefix}IVF{nlist},PQ{pq_m}x{pq_nbits}"
            elif kind == "ivfflat":
                factory = f"IVF{nlist},Flat"
            else:
                params.update(hnsw_m=hnsw_m, ef_construction=ef_construction)
                factory = f"HNSW{hnsw_m}"
            # L2 on unit vectors ranks like inner product (|q - x|^2 = 2 - 2 q.x) and is the metric
            # FAISS' IVF/PQ/HNSW code paths are tuned and tested for; scores are converted back.
            index = faiss.index_factory(dim, factory, faiss.METRIC_L2)
            if kind == "hnsw":
                faiss.downcast_index(index).hnsw.efConstruction = ef_construction
            else:
                assert nlist is not None
                sample_size = training_sample_size(count, nlist, train_size)
                rng = np.random.default_rng(seed)
                sample = vectors[np.sort(rng.choice(count, size=sample_size, replace=False))]
                ivf = faiss.extract_index_ivf(index)
                ivf.cp.seed = seed
                if kind == "ivfpq":
                    # Polysemous training (a slow simulated annealing of code order) only helps
                    # Hamming-filtered search, which PlaceIndex does not use.
                    faiss.downcast_index(ivf).do_polysemous_training = False
                index.train(sample)
                params["train_size"] = sample_size
        if store_vectors is None:
            store_vectors = kind == "ivfpq"
        built = cls(
            index,
            kind,
            params,
            np.empty(0, np.int64),
            {},
            np.empty((0, dim), np.float32) if store_vectors else None,
            use_gpu,
        )
        built.add(vectors, ids=ids, metadata=metadata)
        return built

    def add(self, descriptors: Any, ids: Any = None, metadata: Mapping[str, Any] | None = None) -> None:
        """Append descriptors float32 [M, D] (L2-normalised) with their ids int64 [M] and metadata.

        Ids default to continuing 0..N-1. The metadata keys must match those given at build time.
        """
        vectors = check_descriptors(descriptors, dim=self.dim)
        count = len(vectors)
        new_ids = check_ids(ids, count, lambda: int(self.ids.max()) + 1 if len(self.ids) else 0)
        new_metadata = check_metadata(metadata or {}, count)
        if len(self.ids) and set(new_metadata) != set(self.metadata):
            raise ValueError(f"metadata keys {sorted(new_metadata)} differ from the index's {sorted(self.metadata)}")
        self.index.add(vectors)
        self._gpu_index = None  # the GPU copy is rebuilt on the next search
        self.ids = np.concatenate([self.ids, new_ids])
        for key, values in new_metadata.items():
            old = self.metadata.get(key)
            self.metadata[key] = values if old is None or not len(old) else np.concatenate([old, values])
        if self.vectors is not None:
            self.vectors = vectors.copy() if not len(self.vectors) else np.concatenate([self.vectors, vectors])

    # ------------------------------------------------------------------ searching
    @property
    def dim(self) -> int:
        """Descriptor dimension D."""
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def _search_index(self) -> faiss.Index:
        wants_gpu = self.use_gpu is True or (self.use_gpu == "auto" and _gpu_available())
        if not wants_gpu or self.kind == "hnsw":
            return self.index
        if self.use_gpu is True and not _gpu_available():
            raise RuntimeError("use_gpu=True but faiss has no GPU support or finds no CUDA device")
        if self._gpu_index is None:
            self._gpu_index = faiss.index_cpu_to_all_gpus(self.index)
        return self._gpu_index

    def search(
        self,
        queries: Any,
        k: int = 5,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        rerank: int | None = None,
    ) -> SearchResult:
        """Top-k database rows for each query float32 [Q, D] (L2-normalised).

        Returns min(k, len(index)) columns: asking for more neighbours than the index holds gives
        every row once, never padding that could be mistaken for a row. nprobe: IVF lists visited
        (IVF kinds); ef_search: HNSW search breadth. rerank: fetch this many approximate candidates
        (>= k) and re-order them by exact inner product with the stored vectors (needs
        store_vectors for ivfpq; exact kinds already return exact scores). Every parameter that is
        given must be >= 1 (ValueError otherwise).
        """
        queries = check_descriptors(queries, dim=self.dim, name="queries")
        check_positive(k=k, nprobe=nprobe, ef_search=ef_search, rerank=rerank)
        k = min(k, len(self))
        fetch = min(max(k, int(rerank or 0)), len(self))
        if k == 0:
            empty = np.empty((len(queries), 0))
            return SearchResult(empty.astype(np.float32), empty.astype(np.int64), empty.astype(np.int64))
        index = self._search_index()
        space = faiss.GpuParameterSpace() if index is not self.index else faiss.ParameterSpace()
        if self.kind in ("ivfflat", "ivfpq"):
            nprobe = int(nprobe or self.params.get("nprobe", DEFAULT_NPROBE))
            space.set_index_parameter(index, "nprobe", min(nprobe, self.params["nlist"]))
        if self.kind == "hnsw":
            ef_search = int(ef_search or self.params.get("ef_search", DEFAULT_EF_SEARCH))
            space.set_index_parameter(index, "efSearch", max(ef_search, fetch))
        raw_scores, positions = index.search(queries, fetch)
        scores = raw_scores if self.kind == "flat" else 1.0 - raw_scores / 2.0
        scores = np.where(positions < 0, -np.inf, scores).astype(np.float32)
        if rerank and self.kind == "ivfpq":
            if self.vectors is None:
                raise ValueError("re-ranking an ivfpq index needs its raw vectors: build it with store_vectors=True")
            scores, positions = _exact_rerank(queries, positions, self.vectors)
        scores, positions = scores[:, :k], positions[:, :k]
        ids = np.where(positions >= 0, self.ids[np.clip(positions, 0, None)] if len(self.ids) else -1, -1)
        return SearchResult(scores.astype(np.float32), ids.astype(np.int64), positions.astype(np.int64))

    def metadata_at(self, key: str, positions: np.ndarray) -> np.ndarray:
        """Metadata `key` of rows `positions` (int64, any shape; -1 entries give the first row's value)."""
        if key not in self.metadata:
            raise KeyError(f"index has no metadata {key!r} (it has {sorted(self.metadata)})")
        return self.metadata[key][np.clip(np.asarray(positions), 0, None)]

    def stored_vectors(self) -> np.ndarray:
        """All indexed descriptors float32 [N, D] in row order (exact for flat/ivfflat/hnsw; ivfpq
        needs store_vectors=True because its codes are lossy)."""
        if self.vectors is not None:
            return np.asarray(self.vectors)
        if self.kind == "ivfpq":
            raise ValueError("this ivfpq index kept only lossy codes; build it with store_vectors=True")
        if self.kind == "ivfflat":
            faiss.extract_index_ivf(self.index).make_direct_map()
        return self.index.reconstruct_n(0, len(self))

    def check_model(self, model_sha256: str, model_name: str = "the model", allow_mismatch: bool = False) -> None:
        """Raise ModelMismatchError naming both models if `model_sha256` differs from the sha256 the
        index records for the model it was built with (allow_mismatch=True: accept it anyway).
        Indexes that record no hash accept any model."""
        recorded = self.info.get("model_sha256")
        if allow_mismatch or not recorded or recorded == model_sha256:
            return
        raise ModelMismatchError(
            f"{model_name}: not the model this index was built with (sha256 {model_sha256[:12]}...; the index "
            f"records {self.info.get('model', '?')}, sha256 {str(recorded)[:12]}...): its descriptors would "
            "be compared with another model's. Use that model, rebuild the index, or pass "
            "--allow-model-mismatch (API: allow_mismatch=True)"
        )

    def memory_bytes(self) -> int:
        """Bytes of the serialised FAISS index (the resident search structure), without stored vectors."""
        return int(faiss.serialize_index(self.index).nbytes)

    def summary(self) -> str:
        """One line of text: kind, parameters and size."""
        details = ", ".join(f"{key}={value}" for key, value in self.params.items())
        return f"PlaceIndex {self.kind} ({details}): {len(self)} descriptors"

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write the index folder `path` atomically (staging folder, then swap; no pickle)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            os.chmod(staging, FOLDER_MODE)
            atomic_write_bytes(staging / "index.faiss", faiss.serialize_index(self.index).tobytes())
            save_npy(staging / "ids.npy", self.ids)
            for key, values in self.metadata.items():
                save_npy(staging / f"meta_{key}.npy", values)
            if self.vectors is not None:
                save_npy(staging / "vectors.npy", self.vectors)
            manifest = {
                "format": "structvpr-place-index",
                "version": FORMAT_VERSION,
                "kind": self.kind,
                "params": self.params,
                "count": len(self),
                "metadata": sorted(self.metadata),
                "vectors": self.vectors is not None,
                "info": self.info,
            }
            atomic_write_text(staging / "manifest.json", json.dumps(manifest, indent=2, default=str))
            _swap_folder(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @classmethod
    def load(cls, path: str | Path, use_gpu: bool | str = "auto", mmap_vectors: bool = True) -> PlaceIndex:
        """Read an index folder written by `save`. Stored vectors are memory-mapped by default."""
        path = Path(path)
        _recover_interrupted_swap(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise IndexFileError(f"{path}: not a structvpr index folder (no manifest.json)")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFileError(f"{manifest_path}: unreadable manifest ({error})") from error
        if manifest.get("format") != "structvpr-place-index" or manifest.get("kind") not in KINDS:
            raise IndexFileError(f"{manifest_path}: not a structvpr place index manifest")
        try:
            index = faiss.deserialize_index(np.fromfile(path / "index.faiss", dtype=np.uint8))
            ids = load_npy(path / "ids.npy")
            metadata = {key: load_npy(path / f"meta_{key}.npy") for key in manifest["metadata"]}
            vectors = load_npy(path / "vectors.npy", mmap=mmap_vectors) if manifest["vectors"] else None
        except (OSError, RuntimeError, ValueError) as error:
            raise IndexFileError(f"{path}: damaged index folder ({error})") from error
        if (
            index.ntotal != manifest["count"]
            or len(ids) != index.ntotal
            or any(len(values) != index.ntotal for values in metadata.values())
        ):
            raise IndexFileError(f"{path}: index, ids and metadata row counts disagree")
        return cls(index, manifest["kind"], manifest["params"], ids, metadata, vectors, use_gpu, manifest.get("info"))


def _exact_rerank(queries: np.ndarray, positions: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-order candidate positions [Q, R] by exact inner product; returns (scores, positions)."""
    valid = positions >= 0
    candidates = vectors[np.clip(positions, 0, None).reshape(-1)].reshape(*positions.shape, -1)
    exact = np.einsum("qrd,qd->qr", candidates, queries)
    exact = np.where(valid, exact, -np.inf).astype(np.float32)
    order = np.argsort(-exact, axis=1, kind="stable")
    return np.take_along_axis(exact, order, 1), np.take_along_axis(positions, order, 1)


def check_ids(ids: Any, count: int, next_id: Callable[[], int]) -> np.ndarray:
    """int64 [count] ids of `count` new rows: `ids` as given (ValueError when their number is not
    `count`), or, when None, consecutive ids from `next_id()` (asked only then)."""
    if ids is None:
        start = next_id()
        return np.arange(start, start + count, dtype=np.int64)
    new_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(new_ids) != count:
        raise ValueError(f"ids: got {len(new_ids)} ids for {count} descriptors")
    return new_ids


def check_metadata(metadata: Mapping[str, Any], count: int) -> dict[str, np.ndarray]:
    """Per-row metadata as arrays with `count` rows (strings for object values, never pickled);
    ValueError naming a bad key or row count."""
    checked = {}
    for key, values in metadata.items():
        if not key.replace("_", "").isalnum():
            raise ValueError(f"metadata key {key!r}: use letters, digits and underscores only")
        array = np.asarray(values)
        if array.dtype == object:
            array = np.asarray([str(value) for value in array])  # paths -> fixed-width strings, no pickle
        if len(array) != count:
            raise ValueError(f"metadata {key!r}: {len(array)} rows for {count} descriptors")
        checked[key] = array
    return checked


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write one array as .npy atomically, without pickling."""
    with atomic_write(path, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Read a .npy written by `save_npy` (object arrays are refused; memory-mapped with mmap=True)."""
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def _recover_interrupted_swap(path: Path) -> None:
    """If a process died between the two renames of `_swap_folder`, `path` is missing and the previous
    index sits in `.<name>.old-<pid>`: put it back. Stale old folders beside a good index are removed."""
    leftovers = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not path.exists():
        for old in leftovers:
            if (old / "manifest.json").is_file():
                os.replace(old, path)
                leftovers.remove(old)
                break
    if path.exists():
        for old in leftovers:
            shutil.rmtree(old, ignore_errors=True)


def _swap_folder(staging: Path, path: Path) -> None:
    """Replace folder `path` by `staging`; the old folder is removed only after the new one is in place."""
    _recover_interrupted_swap(path)
    if not path.exists():
        os.replace(staging, path)
        return
    if not (path / "manifest.json").is_file() and any(path.iterdir()):
        raise IndexFileError(f"{path}: exists and is not a structvpr index folder; refusing to replace it")
    old = path.with_name(f".{path.name}.old-{os.getpid()}")
    os.replace(path, old)
    os.replace(staging, path)
    shutil.rmtree(old, ignore_errors=True)
