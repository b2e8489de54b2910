"""Thin FAISS wrapper: cosine search over L2-normalised float32 vectors.

Exact (flat inner product) below `hnsw_above` vectors, HNSW above. Inputs are checked:
2-D, float32, matching dimension.
"""

from __future__ import annotations

import numpy as np


def _check(x: np.ndarray, dim: int | None = None) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {x.shape}")
    if x.dtype != np.float32:
        raise TypeError(f"expected float32 vectors, got {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"expected dimension {dim}, got {x.shape[1]}")
    return np.ascontiguousarray(x)


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class VectorIndex:
    """Cosine kNN over normalised vectors; `kind` is 'auto', 'flat' or 'hnsw'."""

    def __init__(self, dim: int, kind: str = "auto", hnsw_above: int = 100_000, ef_search: int = 64):
        self.dim, self.kind, self.hnsw_above, self.ef_search = dim, kind, hnsw_above, ef_search
        self._index = None
        self.size = 0

    def build(self, vectors: np.ndarray) -> "VectorIndex":
        import faiss

        vectors = _check(vectors, self.dim)
        kind = self.kind
        if kind == "auto":
            kind = "hnsw" if len(vectors) > self.hnsw_above else "flat"
        if kind == "flat":
            self._index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            self._index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efSearch = self.ef_search
        else:
            raise ValueError(f"unknown index kind '{kind}' (valid: auto, flat, hnsw)")
        self.kind = kind
        if len(vectors):
            self._index.add(vectors)
        self.size = len(vectors)
        return self

    def add(self, vectors: np.ndarray) -> None:
        vectors = _check(vectors, self.dim)
        if len(vectors):
            self._index.add(vectors)
            self.size += len(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n_queries, k'); k' = min(k, size). Empty index: width 0."""
        queries = _check(queries, self.dim)
        k = min(k, self.size)
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._index.search(queries, k)


def max_similarity(queries: np.ndarray, index: VectorIndex) -> np.ndarray:
    """Each query's cosine to its nearest indexed vector (-1 where the index is empty)."""
    sims, _ = index.search(queries, 1)
    return sims[:, 0] if sims.shape[1] else np.full(len(queries), -1.0, np.float32)
