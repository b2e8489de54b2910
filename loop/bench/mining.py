"""`loop bench mining`: the mining stage at scale against exact brute force, in the same run.

For each pool size and number of hard cases, on synthetic clustered vectors and on real
MiniLM embeddings (the tweet corpus; pools larger than the corpus are jittered copies of
it), one child process times loop's mining path (index chosen by size, kNN of every hard
case, k-means of the hard cases) and reports its peak memory; the parent times the exact
flat search on the same vectors and computes recall@10 of loop's neighbours.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import resource
import time
from pathlib import Path

import numpy as np

from loop.config import MiningConfig
from loop.index import VectorIndex, normalize
from loop.mining import cluster

log = logging.getLogger(__name__)
DIM = 384


def synthetic(n: int, seed: int, centres: int = 2000) -> np.ndarray:
    """Clustered unit vectors (topics with spread), like sentence embeddings."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, DIM), dtype=np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        block = c[rng.integers(0, centres, m)] + 0.6 * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start:start + m] = normalize(block)
    return out


def real_minilm(cache: Path) -> np.ndarray:
    """MiniLM embeddings of the packaged tweet corpus (computed once, cached as .npy)."""
    if cache.is_file():
        return np.load(cache)
    from loop.config import load_config
    from loop.data import _dedup, read_rows
    from loop.embedder import SentenceEmbedder

    _, rows = read_rows(load_config(None))
    texts = [e.text for e in _dedup(rows)]
    log.info("embedding %d tweets with MiniLM (once)", len(texts))
    vecs = SentenceEmbedder("packaged:all-minilm-l6-v2", max_length=64, batch_size=128).encode(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vecs)
    return vecs


def vectors(kind: str, n: int, seed: int, real: np.ndarray | None) -> np.ndarray:
    if kind == "synthetic":
        return synthetic(n, seed)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(real), n) if n > len(real) else rng.permutation(len(real))[:n]
    base = real[idx]
    if n > len(real):  # jitter the copies so no two vectors coincide
        base = normalize(base + 0.05 * rng.standard_normal(base.shape, dtype=np.float32))
    return base


def _loop_path(pool: np.ndarray, queries: np.ndarray, k: int, index_kind: str, out) -> None:
    """Child process: loop's mining path; sends timings, neighbour ids and peak RSS back."""
    start = time.perf_counter()
    index = VectorIndex(DIM, kind=index_kind).build(pool)
    built = time.perf_counter()
    _, ids = index.search(queries, k)
    searched = time.perf_counter()
    cluster(queries, MiningConfig().max_clusters)
    done = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024  # GiB
    out.send({"kind": index.kind, "build_s": built - start, "search_s": searched - built,
              "cluster_s": done - searched, "total_s": done - start, "peak_gib": peak, "ids": ids})


def one(pool: np.ndarray, queries: np.ndarray, k: int, index_kind: str) -> dict:
    """Loop's path in a fresh process (clean peak memory) vs exact search here."""
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_loop_path, args=(pool, queries, k, index_kind, child))
    proc.start()
    res = parent.recv()
    proc.join()
    start = time.perf_counter()
    _, exact = VectorIndex(DIM, kind="flat").build(pool).search(queries, k)
    exact_s = time.perf_counter() - start
    ids = res.pop("ids")
    recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(ids, exact)]))
    return {**res, "exact_s": exact_s, "recall_at_10": recall, "speedup_vs_exact": exact_s / res["total_s"]}


def run_bench(pools: list[int], hards: list[int], kinds: list[str], index_kind: str, seed: int,
              cache: Path) -> list[dict]:
    real = real_minilm(cache) if "real" in kinds else None
    rows = []
    for kind in kinds:
        for n in pools:
            pool = vectors(kind, n, seed, real)
            for q in hards:
                queries = vectors(kind, q, seed + 1, real)
                row = {"data": kind, "pool": n, "hard_cases": q, **one(pool, queries, 10, index_kind)}
                log.info("%s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
                rows.append(row)
            del pool
    return rows


def write(rows: list[dict], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=2))
