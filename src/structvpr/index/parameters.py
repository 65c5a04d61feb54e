"""Index kinds and the checks of their build and search parameters (no FAISS import, so the CLI can
check a whole command line before any image is described)."""

from __future__ import annotations

import math

KINDS = ("flat", "ivfflat", "ivfpq", "hnsw")
# Query-time defaults when search() is not told otherwise (FAISS' own defaults, nprobe=1 and
# efSearch=16, trade far too much recall for speed on place descriptors).
DEFAULT_NPROBE = 16
DEFAULT_EF_SEARCH = 64


def default_nlist(count: int) -> int:
    """IVF list count: about 4 * sqrt(N), but keeping >= 39 training points per list (FAISS' rule)."""
    return int(max(1, min(4 * math.sqrt(count), count // 39)))


def training_sample_size(count: int, nlist: int, train_size: int | None) -> int:
    """Rows the quantiser is trained on: `train_size` (default min(N, 64 * nlist, 100k)), at least
    nlist and at most N."""
    size = int(train_size or min(count, 64 * nlist, 100_000))
    return max(min(size, count), nlist)


def check_positive(**values: int | None) -> None:
    """Raise ValueError naming the first value that is given (not None) and below 1."""
    for name, value in values.items():
        if value is not None and int(value) < 1:
            raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {value}")


def check_build_parameters(
    kind: str,
    count: int,
    dim: int | None = None,
    *,
    nlist: int | None = None,
    pq_m: int = 32,
    pq_nbits: int = 8,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    train_size: int | None = None,
) -> None:
    """Raise ValueError (with advice) if an index of `kind` cannot be built over `count` descriptors
    of dimension `dim` (None: not known yet) with these parameters."""
    if kind not in KINDS:
        raise ValueError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    check_positive(nlist=nlist, pq_m=pq_m, pq_nbits=pq_nbits, hnsw_m=hnsw_m, ef_construction=ef_construction)
    check_positive(train_size=train_size)
    if count < 1:
        raise ValueError("an index needs at least one descriptor, got none")
    if kind not in ("ivfflat", "ivfpq"):
        return
    lists = int(nlist or default_nlist(count))
    if count < lists:
        raise ValueError(
            f"{kind} with nlist={lists} needs at least {lists} descriptors to train, got {count}: "
            "lower --nlist or use --kind flat"
        )
    if kind != "ivfpq":
        return
    if pq_nbits > 16:
        raise ValueError(f"pq-nbits must be at most 16, got {pq_nbits}")
    if dim is not None and dim % pq_m:
        divisors = [m for m in (4, 8, 16, 32, 64) if dim % m == 0 and m <= dim]
        raise ValueError(
            f"pq-m={pq_m} must divide the descriptor dimension {dim} (e.g. {', '.join(map(str, divisors))})"
        )
    needed = 2**pq_nbits
    sample = training_sample_size(count, lists, train_size)
    if sample < needed:
        raise ValueError(
            f"ivfpq with pq-nbits={pq_nbits} trains {needed} centroids per sub-quantiser and needs at "
            f"least {needed} training descriptors, got {sample} (of {count}): use --kind flat or hnsw "
            f"for a map this small, lower --pq-nbits, or raise --train-size"
        )
