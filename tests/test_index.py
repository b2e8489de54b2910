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


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_search_finds_self(kind):
    x = normalize(np.random.default_rng(0).normal(size=(200, 16)))
    idx = VectorIndex(16, kind=kind).build(x)
    sims, ids = idx.search(x[:10], 3)
    assert (ids[:, 0] == np.arange(10)).all()
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)


def test_auto_picks_by_size_and_empty_index():
    assert VectorIndex(8, exact_below=10).build(normalize(np.ones((20, 8)))).kind == "ivf"
    assert VectorIndex(8).build(normalize(np.ones((20, 8)))).kind == "flat"
    empty = VectorIndex(8).build(np.zeros((0, 8), np.float32))
    assert (max_similarity(normalize(np.ones((2, 8))), empty) == -1).all()


def test_approximate_indexes_recall_on_clustered_data():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 32))
    x = normalize(centres[rng.integers(0, 50, 5000)] + 0.3 * rng.normal(size=(5000, 32)))
    q = normalize(centres[rng.integers(0, 50, 100)] + 0.3 * rng.normal(size=(100, 32)))
    _, exact = VectorIndex(32, kind="flat").build(x).search(q, 10)
    for kind in ("hnsw", "ivf"):
        _, approx = VectorIndex(32, kind=kind).build(x).search(q, 10)
        recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
        assert recall >= 0.9, (kind, recall)
