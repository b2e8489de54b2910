from loop.config import FilterConfig
from loop.data import Candidate, Example
from loop.filters import Reference, rejection_counts, screen

from conftest import HashEmbedder


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
    screen(cands, known, evaluation, FilterConfig(near_dup_cosine=0.95, contamination_cosine=0.95), samples_left=1)
    assert [c.reason or c.verdict for c in cands] == ["parse", "duplicate", "near_duplicate", "contamination",
                                                      "accepted", "duplicate", "budget"]
    assert rejection_counts(cands) == {"parse": 1, "duplicate": 2, "near_duplicate": 1, "contamination": 1,
                                       "budget": 1}
    assert len(known.ids) == 2  # the accepted one joined the reference
