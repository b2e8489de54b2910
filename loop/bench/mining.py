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


def synthetic(n: int, seed: int, centres: int = 2000, latent: int = 32) -> np.ndarray:
    """Clustered unit vectors of low intrinsic dimension (topics in a 32-d space, projected to
    384-d, plus a little noise), the shape sentence embeddings have."""
    rng = np.random.default_rng(seed)
    setup = np.random.default_rng(12345)  # the same topics and projection for pool and queries
    c = setup.standard_normal((centres, latent), dtype=np.float32)
    proj = setup.standard_normal((latent, DIM), dtype=np.float32) / np.sqrt(latent)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        z = c[rng.integers(0, centres, m)] + 0.5 * rng.standard_normal((m, latent), dtype=np.float32)
        out[start:start + m] = normalize(z @ proj + 0.05 * rng.standard_normal((m, DIM), dtype=np.float32))
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


def _peak_rss_gib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _data(kind: str, n: int, q: int, seed: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    real = real_minilm(cache) if kind == "real" else None
    return vectors(kind, n, seed, real), vectors(kind, q, seed + 1, real)


def _loop_path(kind: str, n: int, q: int, seed: int, cache: Path, k: int, index_kind: str, nprobe: int,
               out) -> None:
    """Child process: loop's mining path on regenerated data; sends timings, ids and peak RSS back."""
    pool, queries = _data(kind, n, q, seed, cache)
    start = time.perf_counter()
    index = VectorIndex(DIM, kind=index_kind, nprobe=nprobe).build(pool)
    built = time.perf_counter()
    _, ids = index.search(queries, k)
    searched = time.perf_counter()
    cluster(queries, MiningConfig().max_clusters)
    done = time.perf_counter()
    peak = _peak_rss_gib()  # data included
    data_gib = (pool.nbytes + queries.nbytes) / 2**30
    out.send({"kind": index.kind, "build_s": built - start, "search_s": searched - built,
              "cluster_s": done - searched, "total_s": done - start, "peak_gib": peak, "data_gib": data_gib,
              "ids": ids})


def one(kind: str, n: int, q: int, seed: int, cache: Path, k: int, index_kind: str, nprobe: int) -> dict:
    """Loop's path in a fresh process (clean peak memory; spawned, as FAISS's OpenMP does not
    survive a fork) vs exact search on the same vectors here."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_loop_path, args=(kind, n, q, seed, cache, k, index_kind, nprobe, child))
    proc.start()
    res = parent.recv()
    proc.join()
    pool, queries = _data(kind, n, q, seed, cache)
    start = time.perf_counter()
    _, exact = VectorIndex(DIM, kind="flat").build(pool).search(queries, k)
    exact_s = time.perf_counter() - start
    ids = res.pop("ids")
    recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(ids, exact)]))
    return {**res, "exact_s": exact_s, "recall_at_10": recall, "speedup_vs_exact": exact_s / res["total_s"]}


def run_bench(pools: list[int], hards: list[int], kinds: list[str], index_kind: str, seed: int,
              cache: Path, nprobe: int = 32) -> list[dict]:
    if "real" in kinds:
        real_minilm(cache)  # embed once, before the timed runs
    rows = []
    for kind in kinds:
        for n in pools:
            for q in hards:
                row = {"data": kind, "pool": n, "hard_cases": q, "nprobe": nprobe,
                       **one(kind, n, q, seed, cache, 10, index_kind, nprobe)}
                log.info("%s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
                rows.append(row)
    return rows


def write(rows: list[dict], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=2))
