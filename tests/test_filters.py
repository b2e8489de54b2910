from conftest import HashEmbedder

from loop.config import FilterConfig
from loop.filters import Reference, rejection_counts, screen
from loop.records import Candidate, Example


def cand(text, label="neutral"):
    return Candidate(text=text, label=label, request_id="r", kind="targeted")


def test_screen_verdicts_and_reasons():
    emb = HashEmbedder()
    known = Reference(emb, [Example("the cat sat on the mat", "neutral")])
    evaluation = Reference(emb, [Example("stock prices fell sharply today", "negative")])
    cands = [cand("the cat sat on the mat"),                      # exact duplicate of train
             cand("The cat sat on the mat!"),                     # near duplicate (same tokens)
             cand("stock prices fell sharply today"),             # in an evaluation split
             cand("a brand new sentence about football"),         # fine
             cand("a brand new sentence about football"),         # duplicate inside the round
             cand("completely different words entirely here"),    # fine, but over the cap
             ]
    cands.insert(0, Candidate(text="junk", label="", request_id="r", kind="targeted", verdict="rejected",
                              reason="parse"))
    screen(cands, known, evaluation, FilterConfig(near_dup_cosine=0.95, contamination_cosine=0.95),
           samples_left=1)
    assert [c.reason or c.verdict for c in cands] == ["parse", "duplicate", "near_duplicate", "contamination",
                                                      "accepted", "duplicate", "budget"]
    assert rejection_counts(cands) == {"parse": 1, "duplicate": 2, "near_duplicate": 1, "contamination": 1,
                                       "budget": 1}
    assert len(known.ids) == 2  # the accepted one joined the reference


def test_same_label_scope_keeps_a_close_twin_with_the_other_label():
    """Execution-labelled code: a one-token variant whose tests fail next to a passing one is a contrast."""
    emb = HashEmbedder()
    train = [Example("def f(x): return x + 1 # fine", "correct")]
    evaluation = Reference(emb, [Example("evaluation only text", "correct")])
    cfg = FilterConfig(near_dup_cosine=0.9, contamination_cosine=0.99, diversity_cosine=0.9,
                       similarity_scope="same_label")
    twins = lambda: [cand("def f(x): return x + 1 # fine!", "buggy"),  # noqa: E731
                     cand("def f(x): return x + 1 # fine?", "correct"),
                     cand("def f(x): return x + 1 # fine!!", "buggy")]
    cands = twins()
    known = Reference(emb, train, by_label=True)
    screen(cands, known, evaluation, cfg, samples_left=10)
    # the buggy twin of a correct example stays; the correct twin is a near duplicate; the second buggy twin
    # is too close to the first (diversity within its label)
    assert [c.reason or c.verdict for c in cands] == ["accepted", "near_duplicate", "diversity"]
    # joined, by label
    assert known.nearest(emb.encode(["def f(x): return x + 1 # fine!!"]), ["buggy"])[0] > 0.9
    cands = twins()
    screen(cands, Reference(emb, train), evaluation,
           FilterConfig(near_dup_cosine=0.9, contamination_cosine=0.99, diversity_cosine=0.9),
           samples_left=10)
    assert [c.reason for c in cands] == ["near_duplicate"] * 3  # scope 'all': every twin is a duplicate


def test_in_round_diversity_keeps_the_first_of_a_close_pair():
    emb = HashEmbedder()
    known = Reference(emb, [Example("unrelated seed text", "neutral")])
    evaluation = Reference(emb, [Example("evaluation only text", "neutral")])
    cands = [cand("red apples and green pears today"), cand("red apples and green pears today now"),
             cand("a train leaves the station at noon")]
    cfg = FilterConfig(near_dup_cosine=0.99, contamination_cosine=0.99, diversity_cosine=0.8)
    screen(cands, known, evaluation, cfg, samples_left=10)
    assert [c.reason or c.verdict for c in cands] == ["accepted", "diversity", "accepted"]
    assert cands[1].meta["round_cosine"] >= 0.8
    # with diversity off (cosine 1.0) the close pair both pass
    cands = [cand("red apples and green pears today"), cand("red apples and green pears today now")]
    screen(cands, Reference(emb, [Example("x y z", "neutral")]), evaluation,
           FilterConfig(near_dup_cosine=0.99, contamination_cosine=0.99, diversity_cosine=1.0),
           samples_left=10)
    assert [c.verdict for c in cands] == ["accepted", "accepted"]


def test_agreement_check_runs_after_similarity_and_before_the_cap():
    emb = HashEmbedder()
    known = Reference(emb, [Example("the cat sat on the mat", "neutral")])
    evaluation = Reference(emb, [Example("evaluation only text", "neutral")])
    seen = []

    def agree(pending):
        seen.extend(c.text for c in pending)
        for c in pending:
            if c.label == "positive":
                c.verdict, c.reason = "rejected", "label_disagreement"

    cands = [cand("the cat sat on the mat"), cand("lovely day out", "positive"), cand("a plain remark"),
             cand("another plain remark entirely"), cand("one more different statement")]
    screen(cands, known, evaluation, FilterConfig(diversity_cosine=1.0), samples_left=2, agree=agree)
    assert seen == ["lovely day out", "a plain remark", "another plain remark entirely",
                    "one more different statement"]  # the duplicate never reached the (paid) check
    assert [c.reason or c.verdict for c in cands] == ["duplicate", "label_disagreement", "accepted",
                                                      "accepted", "budget"]


def test_pairs_compare_the_generated_side_only():
    from loop.records import PAIR_SEP
    emb = HashEmbedder()
    ref = "def add(a, b):\n    return a + b"
    known = Reference(emb, [Example(ref + PAIR_SEP + "def add(x, y):\n    return x + y", "clone")])
    evaluation = Reference(emb, [Example("evaluation only text", "neutral")])
    # whole pairs: 0.75
    cfg = FilterConfig(near_dup_cosine=0.7, contamination_cosine=0.99, diversity_cosine=0.9)
    rewrite = cand(ref + PAIR_SEP + "def add(p, q):\n    total = p\n    total += q\n    return total",
                   "clone")
    copy = cand(ref + PAIR_SEP + "def add(x, y):\n    return  x + y", "clone")  # same generated side
    screen([rewrite, copy], known, evaluation, cfg, samples_left=10)
    assert [c.reason or c.verdict for c in (rewrite, copy)] == ["accepted", "near_duplicate"]
    assert rewrite.meta["known_cosine"] < 0.7
