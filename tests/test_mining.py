import numpy as np
import pytest

from loop.config import MiningConfig
from loop.index import normalize
from loop.mining import allocate, build_neighbourhoods, find_hard_cases, margins
from loop.records import Example

LABELS = ["a", "b", "c"]


def test_margins():
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], np.float32)
    assert np.allclose(margins(probs), [0.5, 0.05])


def test_hard_cases_are_errors_and_low_margin():
    exs = [Example(f"t{i}", lab) for i, lab in enumerate(["a", "a", "b", "c"])]
    probs = np.array([[0.9, 0.05, 0.05],   # right, sure: not hard
                      [0.45, 0.4, 0.15],   # right, unsure: low confidence
                      [0.8, 0.1, 0.1],     # wrong (b -> a)
                      [0.1, 0.1, 0.8]], np.float32)
    cases = find_hard_cases(exs, probs, LABELS, MiningConfig(threshold=0.8, low_confidence_weight=0.5))
    by_text = {c.example.text: c for c in cases}
    assert set(by_text) == {"t1", "t2"}
    assert by_text["t2"].wrong and by_text["t2"].predicted == "a" and by_text["t2"].weight == 1.0
    assert not by_text["t1"].wrong and by_text["t1"].confused_with == "b" and by_text["t1"].weight == 0.5


@pytest.mark.parametrize("masses,total,floor,cap", [([5, 3, 1], 10, 1, 6), ([1, 1, 1, 1], 3, 1, 4),
                                                     ([10, 0.1], 7, 2, 4), ([3, 2], 20, 1, 4),
                                                     ([0, 0, 0], 5, 0, 5), ([9, 1, 1, 1, 1], 4, 2, 3)])
def test_allocate_sums_and_bounds(masses, total, floor, cap):
    out = allocate(masses, total, floor, cap)
    given = [x for x in out if x > 0]
    assert sum(out) == min(total, cap * max(1, min(len(masses), total // floor if floor else len(masses))))
    assert all(floor <= x <= cap for x in given)
    # heavier never gets less than lighter
    order = sorted(range(len(masses)), key=lambda i: -masses[i])
    assert all(out[order[i]] >= out[order[i + 1]] for i in range(len(order) - 1))


def test_allocate_is_proportional():
    assert allocate([3, 1], 8, 0, 8) == [6, 2]


def test_neighbourhoods_group_and_rank_by_error_mass():
    rng = np.random.default_rng(0)
    centres = normalize(rng.normal(size=(2, 16)))
    pool = [Example(f"p{i}", LABELS[i % 3]) for i in range(40)]
    pool_vecs = normalize(np.repeat(centres, 20, 0) + 0.05 * rng.normal(size=(40, 16))).astype(np.float32)
    exs = [Example(f"h{i}", "a") for i in range(12)]
    from loop.mining import HardCase
    cases = [HardCase(e, "b", "b", 0.0, 1.0, True, 1.0 if i < 9 else 0.5, 0.1) for i, e in enumerate(exs)]
    vecs = normalize(np.concatenate([np.repeat(centres[:1], 9, 0), np.repeat(centres[1:], 3, 0)])
                     + 0.01 * rng.normal(size=(12, 16))).astype(np.float32)
    hoods = build_neighbourhoods(cases, vecs, pool, pool_vecs, MiningConfig(k_neighbours=5, max_clusters=4))
    assert len(hoods) >= 2
    assert hoods[0].error_mass >= hoods[-1].error_mass
    assert sum(len(h.cases) for h in hoods) == 12
    assert hoods[0].confusion == ("a", "b")
    assert all(0 <= h.label_disagreement <= 1 for h in hoods)
    # the heaviest neighbourhood's neighbours come from the first centre
    assert all(int(e.text[1:]) < 20 for e, _ in hoods[0].neighbours)


def test_uncertainty_scores():
    from loop.mining import uncertainty
    probs = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]], np.float32)
    assert np.allclose(uncertainty(probs, "least_confidence"), [0, 2 / 3, 0.5], atol=1e-6)
    assert np.allclose(uncertainty(probs, "margin"), [0, 1, 1], atol=1e-6)
    ent = uncertainty(probs, "entropy")
    assert ent[0] < 1e-6 and abs(ent[1] - 1) < 1e-5 and 0 < ent[2] < 1


def test_top_k_and_unlabelled_pool_cases():
    exs = [Example(f"t{i}", "a") for i in range(4)] + [Example("pool", "")]
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1],
                      [0.4, 0.35, 0.25]], np.float32)
    cases = find_hard_cases(exs, probs, LABELS, MiningConfig(top_k=2))
    texts = {c.example.text: c for c in cases}
    # t3 is wrong; of the right ones and the unlabelled one, the 2 most uncertain (margin) are pool and t1
    assert set(texts) == {"t3", "pool", "t1"}
    assert not texts["pool"].wrong and texts["pool"].confused_with == "b"


def test_mmr_prefers_relevant_then_diverse():
    from loop.mining import mmr
    q = np.array([1, 0, 0], np.float32)
    # 0 and 1 are near-copies, both most relevant; 2 is a little less relevant but different
    vecs = normalize(np.array([[0.95, 0.31, 0], [0.95, 0.30, 0.05], [0.9, -0.43, 0], [0, 0, 1]], np.float32))
    order = mmr(vecs, q, 3, lam=0.7)
    assert order[0] in (0, 1) and order[1] == 2
    assert sorted(mmr(vecs, q, 10)) == [0, 1, 2, 3]


def test_followup_rates():
    from loop.mining import HardCase, HoodPlan, Neighbourhood
    from loop.plan import Plan
    from loop.stages import MineResult, followup
    exs = [Example(f"f{i}", "a") for i in range(4)]
    cases = [HardCase(e, "b", "b", 0.0, 1.0, True, 1.0, 0.1) for e in exs]
    hood = Neighbourhood(id=3, cases=cases, neighbours=[], error_mass=4, label_disagreement=0, density=0,
                         confusion=("a", "b"))
    mined = MineResult(predicted={"" + exs[0].id: "a", exs[1].id: "a", exs[2].id: "b", exs[3].id: "a"})
    [row] = followup([hood], Plan(hoods={3: HoodPlan(requests=2)}), mined)
    assert row["error_rate_then"] == 1.0 and row["error_rate_now"] == 0.25 and row["requests"] == 2
