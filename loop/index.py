"""Thin FAISS wrapper: cosine search over L2-normalised vectors.

Kinds: `flat` (exact inner product), `ivfsq`, `ivf`, `hnsw`. `ivfsq` is for large pools
searched by many queries: the vectors are projected on the 96 directions that carry most
of their energy (uncentred, so inner products keep their order), coded with 8 bits per
dimension in an IVF index (96 bytes a vector), and the short list it returns (`rerank` x k)
is re-ranked exactly against the vectors themselves, which the index references without
copying: float32 or float16, in memory or memory-mapped from disk (a 10M pool need not fit
in memory). `auto` takes `ivfsq` where the measurements (`loop bench mining`) put it ahead of
exact search: pools of `exact_below` vectors and more searched by `queries` x pool >=
`AUTO_WORK`; exact search otherwise (mining rebuilds its index every round, as the
student's embeddings change, so build time counts).
Inputs are checked: 2-D, float32 (float16 too for `ivfsq`), matching dimension.
"""

from __future__ import annotations

import numpy as np

AUTO_WORK = 1e9  # pool size x queries above which `auto` prefers ivfsq (see loop bench mining)
CHUNK = 200_000  # rows projected and added at a time: bounded temporaries for any pool size


def _check(x: np.ndarray, dim: int | None = None, half: bool = False) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {x.shape}")
    if x.dtype != np.float32 and not (half and x.dtype == np.float16):
        raise TypeError(f"expected float32 vectors, got {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"expected dimension {dim}, got {x.shape[1]}")
    return x if isinstance(x, np.memmap) or x.flags.c_contiguous else np.ascontiguousarray(x)


def normalize(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class VectorIndex:
    """Cosine kNN over normalised vectors; `kind` is 'auto', 'flat', 'ivfsq', 'ivf' or 'hnsw'."""

    def __init__(self, dim: int, kind: str = "auto", exact_below: int = 100_000, ef_search: int = 64,
                 nprobe: int = 32, queries: int = 1, rerank: int = 10):
        self.dim, self.kind, self.exact_below, self.queries = dim, kind, exact_below, queries
        self.ef_search, self.nprobe, self.rerank = ef_search, nprobe, rerank
        self._index = None
        self._compressed: _Compressed | None = None
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

    def _choose(self, n: int) -> str:
        kind = self.kind
        if kind == "auto":
            kind = "ivfsq" if n >= self.exact_below and n * self.queries >= AUTO_WORK else "flat"
        return "flat" if kind in ("ivf", "ivfsq") and n == 0 else kind

    def build(self, vectors: np.ndarray) -> "VectorIndex":
        kind = self._choose(len(vectors))
        vectors = _check(vectors, self.dim, half=kind == "ivfsq")
        self.kind = kind
        if kind == "ivfsq":
            self._compressed = _Compressed(vectors, self.nprobe)
        else:
            self._index = self._make(kind, vectors)
            if len(vectors):
                self._index.add(vectors)
        self.size = len(vectors)
        return self

    def add(self, vectors: np.ndarray) -> None:
        vectors = _check(vectors, self.dim, half=self._compressed is not None)
        if len(vectors):
            if self._compressed is not None:
                self._compressed.add(vectors)
            else:
                self._index.add(np.ascontiguousarray(vectors))
            self.size += len(vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n_queries, k'); k' = min(k, size). Empty index: width 0."""
        queries = np.ascontiguousarray(_check(queries, self.dim))
        k = min(k, self.size)
        if k == 0 or len(queries) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if self._compressed is not None:
            return self._compressed.search(queries, k, min(self.size, self.rerank * k))
        return self._index.search(queries, k)


class _Compressed:
    """IVF with 8-bit codes over a 96-d uncentred projection; exact re-ranking against the vectors kept
    by reference (see the module's docstring)."""

    def __init__(self, vectors: np.ndarray, nprobe: int, dims: int = 96, per_list: int = 40):
        import faiss

        n, dim = vectors.shape
        self.vectors = vectors
        nlist = max(1, min(4096, int(np.sqrt(n))))
        rng = np.random.default_rng(0)
        take = min(n, per_list * nlist)
        sample = np.asarray(vectors[np.sort(rng.choice(n, take, replace=False))] if take < n else vectors,
                            np.float32)
        _, vecs = np.linalg.eigh(sample.T.astype(np.float64) @ sample)  # ascending eigenvalues
        self.proj = np.ascontiguousarray(vecs[:, ::-1][:, :min(dims, dim)], np.float32)
        self.quantizer = faiss.IndexFlatIP(self.proj.shape[1])  # the IVF index does not own it
        self.ivf = faiss.IndexIVFScalarQuantizer(self.quantizer, self.proj.shape[1], nlist,
                                                 faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        self.ivf.cp.niter = 10
        self.ivf.train(sample @ self.proj)
        self.ivf.nprobe = min(nprobe, nlist)
        self._add_codes(vectors)

    def _add_codes(self, vectors: np.ndarray) -> None:
        for start in range(0, len(vectors), CHUNK):
            self.ivf.add(np.asarray(vectors[start:start + CHUNK], np.float32) @ self.proj)

    def add(self, vectors: np.ndarray) -> None:
        self._add_codes(vectors)
        self.vectors = np.concatenate([self.vectors, vectors.astype(self.vectors.dtype)])

    def search(self, queries: np.ndarray, k: int, short: int) -> tuple[np.ndarray, np.ndarray]:
        _, cand = self.ivf.search(queries @ self.proj, short)
        sims = np.empty((len(queries), k), np.float32)
        ids = np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), 1000):  # bounded temporaries: 1,000 x short x dim at a time
            c = cand[start:start + 1000]
            s = _rescore(self.vectors, c, queries[start:start + 1000])
            order = np.argsort(-s, axis=1, kind="stable")[:, :k]
            sims[start:start + 1000] = np.take_along_axis(s, order, 1)
            ids[start:start + 1000] = np.take_along_axis(c, order, 1)
        return sims, ids


def _rescore(vectors: np.ndarray, cand: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact inner products of each query with its candidates (-inf where the short list ran out). The
    candidates' rows are read once each, in order (a memory-mapped pool is read forwards)."""
    unique = np.unique(cand[cand >= 0])
    rows = np.asarray(vectors[unique], np.float32)
    s = np.einsum("qkd,qd->qk", rows[np.searchsorted(unique, cand).clip(0, max(len(unique) - 1, 0))], queries)
    s[cand < 0] = -np.inf
    return s


def max_similarity(queries: np.ndarray, index: VectorIndex) -> np.ndarray:
    """Each query's cosine to its nearest indexed vector (-1 where the index is empty)."""
    sims, _ = index.search(queries, 1)
    return sims[:, 0] if sims.shape[1] else np.full(len(queries), -1.0, np.float32)
