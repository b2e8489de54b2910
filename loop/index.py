"""Thin FAISS wrapper: cosine search over L2-normalised float32 vectors.

Exact (flat inner product) below `exact_below` vectors; IVF above (mining rebuilds the
index every round, as the student's embeddings change, and IVF builds far faster than
HNSW on a million vectors); HNSW on request.
Inputs are checked: 2-D, float32, matching dimension.
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
    """Cosine kNN over normalised vectors; `kind` is 'auto', 'flat', 'hnsw' or 'ivf'."""

    def __init__(self, dim: int, kind: str = "auto", exact_below: int = 50_000, ef_search: int = 64,
                 nprobe: int = 32):
        self.dim, self.kind, self.exact_below = dim, kind, exact_below
        self.ef_search, self.nprobe = ef_search, nprobe
        self._index = None
        self.size = 0

    def _make(self, kind: str, vectors: np.ndarray):
        import faiss

        if kind == "flat":
            return faiss.IndexFlatIP(self.dim)
        if kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
            index.hnsw.efSearch = self.ef_search
            return index
        if kind == "ivf":
            nlist = max(1, min(4096, int(np.sqrt(len(vectors)))))
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            self._quantizer = quantizer  # the IVF index does not own its quantizer: keep it alive
            # coarse k-means on a sample (40 points per list) with few iterations: build time matters
            index.cp.niter = 10
            rng = np.random.default_rng(0)
            size = min(len(vectors), 40 * nlist)
            index.train(vectors if size == len(vectors)
                        else vectors[np.sort(rng.choice(len(vectors), size, replace=False))])
            index.nprobe = min(self.nprobe, nlist)
            return index
        raise ValueError(f"unknown index kind '{kind}' (valid: auto, flat, hnsw, ivf)")

    def build(self, vectors: np.ndarray) -> "VectorIndex":
        vectors = _check(vectors, self.dim)
        kind = self.kind
        if kind == "auto":
            kind = "ivf" if len(vectors) >= self.exact_below else "flat"
        if kind == "ivf" and len(vectors) == 0:
            kind = "flat"
        self._index = self._make(kind, vectors)
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
