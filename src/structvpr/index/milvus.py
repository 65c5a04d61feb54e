"""MilvusPlaceIndex: the PlaceIndex interface on a Milvus collection, for maps beyond one machine.

The same code runs on an embedded Milvus Lite file (``uri="map.db"``: tests, laptops) and on a
Milvus server or cluster (``uri="http://host:19530"``, optional ``token``). One collection holds
the descriptors (FLOAT_VECTOR, inner-product metric), the image ids (INT64 primary key) and one
field per metadata array (poses as ARRAY<DOUBLE>, paths as VARCHAR, scalars as DOUBLE/INT64).
Scores are inner products of L2-normalised descriptors (cosine similarity), as in `PlaceIndex`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from structvpr.index.parameters import check_positive
from structvpr.index.place_index import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    KINDS,
    IndexFileError,
    SearchResult,
    check_descriptors,
    check_ids,
    check_metadata,
    default_nlist,
)
from structvpr.io_utils import atomic_write_text

VECTOR_FIELD = "descriptor"
ID_FIELD = "id"
INSERT_BATCH = 2000
MAX_STRING = 4096
# Index types Milvus Lite implements (a cluster implements all four kinds).
LITE_KINDS = ("flat", "ivfflat", "hnsw")


def _is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def _client(uri: str, token: str | None) -> Any:
    try:
        from pymilvus import MilvusClient
    except ImportError as error:  # optional dependency: pip install structvpr[milvus]
        raise RuntimeError(
            "the Milvus backend needs pymilvus (and milvus-lite for .db files): pip install 'structvpr[milvus]'"
        ) from error
    if _is_lite(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    return MilvusClient(uri=uri, token=token or "")


def _index_params(kind: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if kind == "flat":
        return "FLAT", {}
    if kind == "ivfflat":
        return "IVF_FLAT", {"nlist": params["nlist"]}
    if kind == "ivfpq":
        return "IVF_PQ", {"nlist": params["nlist"], "m": params["pq_m"], "nbits": params["pq_nbits"]}
    return "HNSW", {"M": params["hnsw_m"], "efConstruction": params["ef_construction"]}


class MilvusPlaceIndex:
    """Place descriptors in one Milvus collection; build/add/search/save/load like `PlaceIndex`.

    `save(path)` writes a small JSON manifest (URI, collection, kind, parameters) -- the vectors
    stay in Milvus -- and `MilvusPlaceIndex.load(path)` reconnects to them.
    """

    def __init__(
        self,
        client: Any,
        uri: str,
        collection: str,
        kind: str,
        params: dict[str, Any],
        metadata_fields: dict[str, dict[str, Any]],
        token: str | None = None,
    ) -> None:
        self.client = client
        self.uri = uri
        self.collection = collection
        self.kind = kind
        self.params = params
        self.metadata_fields = metadata_fields
        self.token = token

    @classmethod
    def build(
        cls,
        descriptors: Any,
        kind: str = "hnsw",
        metadata: Mapping[str, Any] | None = None,
        ids: Any = None,
        *,
        uri: str = "structvpr_places.db",
        collection: str = "places",
        token: str | None = None,
        nlist: int | None = None,
        pq_m: int = 32,
        pq_nbits: int = 8,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        overwrite: bool = False,
        normalize: bool = False,
    ) -> MilvusPlaceIndex:
        """Create collection `collection` at `uri` and insert `descriptors` float32 [N, D].

        kind: "flat" | "ivfflat" | "ivfpq" | "hnsw" (Milvus Lite: not ivfpq). metadata: name ->
        array with N rows (e.g. "poses" float64 [N, 2]). overwrite=True drops an existing collection
        of that name; otherwise an existing one is an error.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
        if _is_lite(uri) and kind not in LITE_KINDS:
            raise ValueError(
                f"Milvus Lite ({uri}) does not implement {kind}; use one of "
                f"{', '.join(LITE_KINDS)} or a Milvus server URI"
            )
        vectors = check_descriptors(descriptors, normalize=normalize)
        count, dim = vectors.shape
        params: dict[str, Any] = {"dim": dim}
        if kind in ("ivfflat", "ivfpq"):
            params["nlist"] = int(nlist or default_nlist(count))
        if kind == "ivfpq":
            params.update(pq_m=pq_m, pq_nbits=pq_nbits)
        if kind == "hnsw":
            params.update(hnsw_m=hnsw_m, ef_construction=ef_construction)
        checked = check_metadata(metadata or {}, count)
        fields = {key: _field_spec(key, values) for key, values in checked.items()}

        from pymilvus import DataType, MilvusClient

        client = _client(uri, token)
        if client.has_collection(collection):
            if not overwrite:
                raise ValueError(f"{uri}: collection {collection!r} already exists (pass overwrite=True)")
            client.drop_collection(collection)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        for key, spec in fields.items():
            if spec["type"] == "array":
                schema.add_field(key, DataType.ARRAY, element_type=DataType.DOUBLE, max_capacity=spec["width"])
            elif spec["type"] == "string":
                schema.add_field(key, DataType.VARCHAR, max_length=MAX_STRING)
            else:
                schema.add_field(key, DataType.INT64 if spec["type"] == "int" else DataType.DOUBLE)
        index_params = client.prepare_index_params()
        index_type, build_params = _index_params(kind, params)
        index_params.add_index(field_name=VECTOR_FIELD, index_type=index_type, metric_type="IP", params=build_params)
        # Strong consistency: a search right after an insert sees it (tests, incremental maps).
        client.create_collection(collection, schema=schema, index_params=index_params, consistency_level="Strong")
        built = cls(client, uri, collection, kind, params, fields, token)
        built.add(vectors, ids=ids, metadata=checked)
        return built

    @classmethod
    def from_place_index(cls, index: Any, kind: str | None = None, **options: Any) -> MilvusPlaceIndex:
        """Copy a FAISS `PlaceIndex` (vectors, ids, metadata) into a new collection; options as `build`."""
        params = {
            key: value
            for key, value in index.params.items()
            if key in ("nlist", "pq_m", "pq_nbits", "hnsw_m", "ef_construction")
        }
        params.update(options)
        return cls.build(
            index.stored_vectors(), kind=kind or index.kind, metadata=index.metadata, ids=index.ids, **params
        )

    def add(self, descriptors: Any, ids: Any = None, metadata: Mapping[str, Any] | None = None) -> None:
        """Insert descriptors float32 [M, D] with ids int64 [M] (default: continue from the row count)."""
        vectors = check_descriptors(descriptors, dim=self.dim)
        count = len(vectors)
        new_ids = check_ids(ids, count, lambda: len(self))
        checked = check_metadata(metadata or {}, count)
        if set(checked) != set(self.metadata_fields):
            raise ValueError(
                f"metadata keys {sorted(checked)} differ from the collection's {sorted(self.metadata_fields)}"
            )
        for start in range(0, count, INSERT_BATCH):
            stop = min(start + INSERT_BATCH, count)
            rows = []
            for row in range(start, stop):
                entity: dict[str, Any] = {ID_FIELD: int(new_ids[row]), VECTOR_FIELD: vectors[row]}
                for key, values in checked.items():
                    entity[key] = _to_field_value(values[row], self.metadata_fields[key]["type"])
                rows.append(entity)
            self.client.insert(self.collection, rows)

    @property
    def dim(self) -> int:
        """Descriptor dimension D."""
        return int(self.params["dim"])

    def __len__(self) -> int:
        self.client.flush(self.collection)
        return int(self.client.get_collection_stats(self.collection)["row_count"])

    def search(
        self,
        queries: Any,
        k: int = 5,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        rerank: int | None = None,
    ) -> SearchResult:
        """Top-k rows per query float32 [Q, D]; `positions` equal the ids (Milvus has no row order).

        Like `PlaceIndex.search`: at most len(index) columns, and every given parameter must be >= 1.

        nprobe / ef_search as in `PlaceIndex.search`; rerank: fetch this many candidates with their
        stored vectors and re-order them by exact inner product.
        """
        queries = check_descriptors(queries, dim=self.dim, name="queries")
        check_positive(k=k, nprobe=nprobe, ef_search=ef_search, rerank=rerank)
        size = len(self)
        k = min(k, size)
        fetch = min(max(k, int(rerank or 0)), size)
        if k == 0:
            empty = np.empty((len(queries), 0))
            return SearchResult(empty.astype(np.float32), empty.astype(np.int64), empty.astype(np.int64))
        search_params: dict[str, Any] = {}
        if self.kind in ("ivfflat", "ivfpq"):
            search_params["nprobe"] = min(int(nprobe or DEFAULT_NPROBE), self.params["nlist"])
        if self.kind == "hnsw":
            search_params["ef"] = max(int(ef_search or DEFAULT_EF_SEARCH), fetch)
        hits = self.client.search(
            self.collection,
            data=list(queries),
            limit=fetch,
            anns_field=VECTOR_FIELD,
            search_params={"metric_type": "IP", "params": search_params},
            output_fields=[VECTOR_FIELD] if rerank else [],
        )
        scores = np.full((len(queries), fetch), -np.inf, np.float32)
        ids = np.full((len(queries), fetch), -1, np.int64)
        for row, query_hits in enumerate(hits):
            for column, hit in enumerate(query_hits):
                ids[row, column] = hit["id"]
                if rerank:  # exact score from the stored vector, not the index's estimate
                    stored = np.asarray(hit["entity"][VECTOR_FIELD], np.float32)
                    scores[row, column] = float(stored @ queries[row])
                else:
                    scores[row, column] = hit["distance"]
        if rerank:
            order = np.argsort(-scores, axis=1, kind="stable")
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        return SearchResult(scores[:, :k], ids[:, :k], ids[:, :k].copy())

    def metadata_at(self, key: str, positions: np.ndarray) -> np.ndarray:
        """Metadata `key` of ids `positions` (int64, any shape; -1 entries give an empty value)."""
        if key not in self.metadata_fields:
            raise KeyError(f"collection has no metadata {key!r} (it has {sorted(self.metadata_fields)})")
        positions = np.asarray(positions, dtype=np.int64)
        wanted = sorted({int(value) for value in positions.reshape(-1) if value >= 0})
        rows = (
            self.client.query(self.collection, filter=f"{ID_FIELD} in {wanted}", output_fields=[key]) if wanted else []
        )
        by_id = {row[ID_FIELD]: row[key] for row in rows}
        spec = self.metadata_fields[key]
        empty: Any = (
            [np.nan] * spec.get("width", 1) if spec["type"] == "array" else ("" if spec["type"] == "string" else np.nan)
        )
        values = [by_id.get(int(value), empty) for value in positions.reshape(-1)]
        array = np.asarray(values)
        return array.reshape(*positions.shape, *array.shape[1:])

    def summary(self) -> str:
        """One line of text: backend, kind, parameters and size."""
        details = ", ".join(f"{key}={value}" for key, value in self.params.items())
        return f"MilvusPlaceIndex {self.kind} ({details}) at {self.uri}/{self.collection}: {len(self)} descriptors"

    def save(self, path: str | Path) -> None:
        """Write a JSON manifest that `load` reconnects from (the vectors stay in Milvus).

        A Lite file path is stored as given (relative paths stay relative to the working directory).
        The token is not written: pass it to `load` again.
        """
        self.client.flush(self.collection)
        manifest = {
            "format": "structvpr-milvus-index",
            "version": 1,
            "uri": self.uri,
            "collection": self.collection,
            "kind": self.kind,
            "params": self.params,
            "metadata_fields": self.metadata_fields,
        }
        atomic_write_text(path, json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: str | Path, token: str | None = None) -> MilvusPlaceIndex:
        """Reconnect to the collection named by a manifest written by `save`."""
        path = Path(path)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise IndexFileError(f"{path}: not a readable Milvus index manifest ({error})") from error
        if not isinstance(manifest, dict) or manifest.get("format") != "structvpr-milvus-index":
            raise IndexFileError(f"{path}: not a structvpr Milvus index manifest")
        client = _client(manifest["uri"], token)
        if not client.has_collection(manifest["collection"]):
            raise IndexFileError(f"{path}: collection {manifest['collection']!r} not found at {manifest['uri']}")
        client.load_collection(manifest["collection"])
        return cls(
            client,
            manifest["uri"],
            manifest["collection"],
            manifest["kind"],
            manifest["params"],
            manifest["metadata_fields"],
            token,
        )

    def close(self) -> None:
        """Release the connection (Milvus Lite: stops the embedded engine for this file)."""
        self.client.close()


def _field_spec(key: str, values: np.ndarray) -> dict[str, Any]:
    if values.dtype.kind in "US":
        return {"type": "string"}
    if values.dtype.kind not in "biuf":
        raise ValueError(f"metadata {key!r}: dtype {values.dtype} cannot be stored in Milvus")
    if values.ndim == 1:
        return {"type": "int" if values.dtype.kind in "biu" else "float"}
    if values.ndim == 2:
        return {"type": "array", "width": int(values.shape[1])}
    raise ValueError(f"metadata {key!r}: expected [N] or [N, P] values, got shape {values.shape}")


def _to_field_value(value: Any, field_type: str) -> Any:
    if field_type == "array":
        return [float(element) for element in value]
    if field_type == "string":
        text = str(value)
        if len(text.encode("utf-8")) > MAX_STRING:
            raise ValueError(f"metadata string longer than {MAX_STRING} bytes: {text[:60]}...")
        return text
    return int(value) if field_type == "int" else float(value)
