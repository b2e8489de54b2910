"""`loop bench mining`: the mining stage at scale against exact brute force, in the same run.

For each pool size and number of hard cases, on synthetic clustered vectors and on real
MiniLM embeddings (the tweet corpus; pools larger than the corpus are jittered copies of
it), one child process times loop's mining path (index chosen by size, kNN of every hard
case, k-means of the hard cases) and reports its peak memory; the parent times the exact
flat search on the same vectors and computes recall@10 of loop's neighbours.

With `disk` the pool is written once to a .npy file there and memory-mapped (its pages are
page cache, not the process's own memory): the 10M setting. The exact search then runs on
the first `EXACT_QUERIES` hard cases only, streamed over the pool, for recall.
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


EXACT_QUERIES = 1000
STEP = 100_000


def vectors(kind: str, n: int, seed: int, real: np.ndarray | None,
            out: np.ndarray | None = None) -> np.ndarray:
    """n vectors written into `out` (float32 or float16, in memory or a memory map) a chunk at a time."""
    out = np.empty((n, DIM), np.float32) if out is None else out
    if kind == "synthetic":
        for start in range(0, n, STEP):
            m = min(STEP, n - start)
            out[start:start + m] = synthetic(m, seed * 1000 + start // STEP)
        return out
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(real), n) if n > len(real) else rng.permutation(len(real))[:n]
    for start in range(0, n, STEP):
        base = real[idx[start:start + STEP]]
        if n > len(real):  # jitter the copies so no two vectors coincide
            base = normalize(base + 0.05 * rng.standard_normal(base.shape, dtype=np.float32))
        out[start:start + len(base)] = base
    return out


def _status_gib(field: str) -> float | None:
    """A memory figure of this process from /proc/self/status, in GiB (None where there is none)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 2**20
    return None


def _peak_rss_gib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    peak = _status_gib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class AnonPeak:
    """The peak of this process's own (anonymous) memory, sampled every 20 ms: unlike VmHWM it leaves out
    the page cache of a memory-mapped pool, which the kernel reclaims at will."""

    def __init__(self):
        import threading

        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _anon_gib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _anon_gib())


def _anon_gib() -> float:
    return _status_gib("RssAnon") or 0.0


def _data(kind: str, n: int, q: int, seed: int, cache: Path, dtype: str = "float32",
          disk: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    real = real_minilm(cache) if kind == "real" else None
    queries = vectors(kind, q, seed + 1, real)
    if disk is None:
        return vectors(kind, n, seed, real, np.empty((n, DIM), dtype)), queries
    path = disk / f"pool-{kind}-{n}-{seed}-{dtype}.npy"
    if not path.is_file():  # written once, a chunk at a time
        part = path.with_suffix(".part")
        vectors(kind, n, seed, real, np.lib.format.open_memmap(part, "w+", np.dtype(dtype), (n, DIM)))
        part.rename(path)
    return np.load(path, mmap_mode="r"), queries


def _loop_path(kind: str, n: int, q: int, seed: int, cache: Path, k: int, index_kind: str, nprobe: int,
               dtype: str, disk: Path | None, out) -> None:
    """Child process: loop's mining path on regenerated data; sends timings, ids and peak memory back."""
    sampler = AnonPeak()
    pool, queries = _data(kind, n, q, seed, cache, dtype, disk)
    start = time.perf_counter()
    index = VectorIndex(DIM, kind=index_kind, nprobe=nprobe, queries=q).build(pool)
    built = time.perf_counter()
    _, ids = index.search(queries, k)
    searched = time.perf_counter()
    cluster(queries, MiningConfig().max_clusters)
    done = time.perf_counter()
    peak = _peak_rss_gib()  # data included (and, memory-mapped, the pool's cached pages)
    data_gib = (pool.nbytes + queries.nbytes) / 2**30
    out.send({"kind": index.kind, "build_s": built - start, "search_s": searched - built,
              "cluster_s": done - searched, "total_s": done - start, "peak_gib": peak,
              "peak_anon_gib": sampler.stop(), "data_gib": data_gib, "ids": ids})


def _exact(pool: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids (FAISS brute force, one BLAS product per chunk, the vectors not copied into an
    index); a float32 pool in memory in one piece, else streamed 500k vectors at a time."""
    import faiss

    whole = isinstance(pool, np.ndarray) and not isinstance(pool, np.memmap) and pool.dtype == np.float32
    step = len(pool) if whole else 5 * STEP
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_i = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(pool), step):
        chunk = np.ascontiguousarray(pool[start:start + step], np.float32)
        s, i = faiss.knn(queries, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        best_s, best_i = np.hstack([best_s, s]), np.hstack([best_i, i + start])
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    return best_i


def one(kind: str, n: int, q: int, seed: int, cache: Path, k: int, index_kind: str, nprobe: int,
        dtype: str = "float32", disk: Path | None = None) -> dict:
    """Loop's path in a fresh process (clean peak memory; spawned, as FAISS's OpenMP does not
    survive a fork) vs exact search on the same vectors here."""
    if disk is not None:
        _data(kind, n, q, seed, cache, dtype, disk)  # the pool file, written before anything is timed
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_loop_path,
                       args=(kind, n, q, seed, cache, k, index_kind, nprobe, dtype, disk, child))
    proc.start()
    res = parent.recv()
    proc.join()
    pool, queries = _data(kind, n, q, seed, cache, dtype, disk)
    if disk is not None:
        queries = queries[:EXACT_QUERIES]
    start = time.perf_counter()
    exact = _exact(pool, queries, k)
    exact_s = time.perf_counter() - start
    ids = res.pop("ids")
    recall = float(np.mean([len(set(a) & set(e)) / k for a, e in zip(ids, exact)]))
    if disk is not None:  # timed on a share of the queries: not comparable
        return {**res, "exact_queries": len(queries), "exact_s": exact_s, "recall_at_10": recall,
                "speedup_vs_exact": None}
    return {**res, "exact_s": exact_s, "recall_at_10": recall, "speedup_vs_exact": exact_s / res["total_s"]}


def run_bench(pools: list[int], hards: list[int], kinds: list[str], index_kind: str, seed: int,
              cache: Path, nprobe: int = 32, dtype: str = "float32", disk: Path | None = None) -> list[dict]:
    if "real" in kinds:
        real_minilm(cache)  # embed once, before the timed runs
    rows = []
    for kind in kinds:
        for n in pools:
            for q in hards:
                row = {"data": kind, "pool": n, "hard_cases": q, "nprobe": nprobe, "index": index_kind,
                       "dtype": dtype, "memory_mapped": disk is not None,
                       **one(kind, n, q, seed, cache, 10, index_kind, nprobe, dtype, disk)}
                log.info("%s", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
                rows.append(row)
    return rows


def write(rows: list[dict], out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=2))
