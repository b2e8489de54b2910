import numpy as np
import pytest

from loop.index import VectorIndex, max_similarity, normalize


def test_checks_dtype_and_shape():
    idx = VectorIndex(4)
    with pytest.raises(TypeError, match="float32"):
        idx.build(np.zeros((3, 4), np.float64))
    with pytest.raises(ValueError, match="2-D"):
        idx.build(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="dimension 4"):
        idx.build(np.zeros((3, 5), np.float32))


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfsq"])
def test_search_finds_self(kind):
    x = normalize(np.random.default_rng(0).normal(size=(200, 16)))
    idx = VectorIndex(16, kind=kind).build(x)
    sims, ids = idx.search(x[:10], 3)
    assert (ids[:, 0] == np.arange(10)).all()
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)


def test_auto_picks_by_size_and_empty_index():
    x = normalize(np.random.default_rng(0).normal(size=(20, 8)))
    # the compressed index where the pool is large enough and searched by enough queries
    assert VectorIndex(8, exact_below=10, queries=10**8).build(x).kind == "ivfsq"
    assert VectorIndex(8, exact_below=10, queries=1).build(x).kind == "flat"
    assert VectorIndex(8, queries=10**8).build(x).kind == "flat"  # below exact_below
    assert VectorIndex(8).build(x).kind == "flat"
    empty = VectorIndex(8).build(np.zeros((0, 8), np.float32))
    assert (max_similarity(normalize(np.ones((2, 8))), empty) == -1).all()


def test_approximate_indexes_recall_on_clustered_data():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 32))
    x = normalize(centres[rng.integers(0, 50, 5000)] + 0.3 * rng.normal(size=(5000, 32)))
    q = normalize(centres[rng.integers(0, 50, 100)] + 0.3 * rng.normal(size=(100, 32)))
    _, exact = VectorIndex(32, kind="flat").build(x).search(q, 10)
    for kind in ("hnsw", "ivf", "ivfsq"):
        _, approx = VectorIndex(32, kind=kind).build(x).search(q, 10)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
        assert recall >= 0.9, (kind, recall)


def _clustered(n, dim=128, seed=1):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0).normal(size=(40, dim))
    return normalize(centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, dim)))


def test_ivfsq_reranks_float16_vectors_memory_mapped_from_disk_without_copying_them(tmp_path):
    x, q = _clustered(6000), _clustered(100, seed=2)
    _, exact = VectorIndex(128, kind="flat").build(x).search(q, 10)
    path = tmp_path / "pool.npy"
    np.save(path, x.astype(np.float16))
    pool = np.load(path, mmap_mode="r")
    idx = VectorIndex(128, kind="ivfsq").build(pool)
    assert idx._compressed.vectors is pool  # referenced, not copied into memory
    assert idx._compressed.proj.shape == (128, 96)  # searched in 96 dimensions, re-ranked in 128
    sims, ids = idx.search(q, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(ids, exact)])
    assert recall >= 0.9, recall
    # the similarities are the exact ones (of the float16 vectors), in order
    assert np.allclose(sims[:, 0], (x[ids[:, 0]].astype(np.float16).astype(np.float32) * q).sum(1), atol=1e-3)
    assert (np.diff(sims, axis=1) <= 1e-6).all()


def test_ivfsq_finds_what_is_added_and_a_short_pool():
    x = _clustered(3000)
    idx = VectorIndex(128, kind="ivfsq").build(x)
    new = _clustered(5, seed=9)
    idx.add(new)
    _, ids = idx.search(new, 1)
    assert (ids[:, 0] == np.arange(3000, 3005)).all() and idx.size == 3005
    sims, ids = VectorIndex(128, kind="ivfsq").build(x[:3]).search(x[:2], 10)
    assert ids.shape == (2, 3) and (ids[:, 0] == [0, 1]).all()
