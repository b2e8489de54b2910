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


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_finds_self(kind):
    x = normalize(np.random.default_rng(0).normal(size=(200, 16)))
    idx = VectorIndex(16, kind=kind).build(x)
    sims, ids = idx.search(x[:10], 3)
    assert (ids[:, 0] == np.arange(10)).all()
    assert np.allclose(sims[:, 0], 1.0, atol=1e-5)


def test_auto_picks_by_size_and_empty_index():
    assert VectorIndex(8, hnsw_above=10).build(normalize(np.ones((20, 8)))).kind == "hnsw"
    assert VectorIndex(8).build(normalize(np.ones((20, 8)))).kind == "flat"
    empty = VectorIndex(8).build(np.zeros((0, 8), np.float32))
    assert (max_similarity(normalize(np.ones((2, 8))), empty) == -1).all()
