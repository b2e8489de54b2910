"""The free label check: a teacher's label stands only where the student or the nearest gold examples
give it; rejected candidates say why, and tasks labelled by running code are not checked."""

from __future__ import annotations

import pytest
from conftest import HashEmbedder, TinyStudent

from loop.config import load_config
from loop.labelcheck import GoldVote, LabelCheck
from loop.records import Candidate, Example
from loop.tasks.classify import ClassifyTask

GOLD = [Example(f"{w} {w} day", "negative") for w in ("awful", "hate", "broken")] + \
       [Example(f"{w} {w} day", "positive") for w in ("love", "great", "happy")] + \
       [Example(f"{w} {w} day", "neutral") for w in ("meeting", "report", "schedule")]


def cand(text: str, label: str) -> Candidate:
    return Candidate(text=text, label=label, request_id="q", kind="targeted")


class Neutral(TinyStudent):
    """A student that says neutral to everything."""

    def predict(self, examples):
        pred = super().predict(examples)
        pred.labels = ["neutral"] * len(examples)
        return pred


@pytest.fixture
def check():
    task = ClassifyTask(load_config(None))
    student = TinyStudent()
    student.fit(GOLD)
    return LabelCheck(task, student, GoldVote(HashEmbedder(), GOLD, k=3))


def test_a_label_nothing_supports_is_rejected_and_a_supported_one_kept(check):
    cands = [cand("awful hate broken", "positive"), cand("awful hate broken", "negative"),
             cand("love great happy", "positive")]
    check(cands, HashEmbedder().encode([c.text for c in cands]))
    assert [(c.verdict, c.reason) for c in cands] == [("rejected", "likely_mislabelled"), ("pending", ""),
                                                      ("pending", "")]
    assert cands[0].meta == {"student_label": "negative", "gold_vote": "negative"}


def test_either_the_student_or_the_gold_vote_is_enough():
    """A student that says neutral to everything, nearest gold texts that say negative: both labels stand,
    the third does not."""
    check = LabelCheck(ClassifyTask(load_config(None)), Neutral(), GoldVote(HashEmbedder(), GOLD, k=3))
    cands = [cand("awful hate broken", lab) for lab in ("neutral", "negative", "positive")]
    check(cands, HashEmbedder().encode([c.text for c in cands]))
    assert [c.verdict for c in cands] == ["pending", "pending", "rejected"]
    assert cands[2].meta == {"student_label": "neutral", "gold_vote": "negative"}


def test_the_gold_vote_breaks_ties_by_nearness():
    gold = [Example("alpha beta", "a"), Example("alpha gamma", "b"), Example("zeta eta", "c")]
    vote = GoldVote(HashEmbedder(), gold, k=2)
    assert vote.majority(HashEmbedder().encode(["alpha beta beta"])) == ["a"]
    assert vote.majority(HashEmbedder().encode(["alpha gamma gamma"])) == ["b"]
    assert GoldVote(HashEmbedder(), [], k=3).majority(HashEmbedder().encode(["x"])) == [None]


def test_the_loop_rejects_unsupported_labels_only_with_the_check_on(tiny_config, tmp_path):
    """A teacher that labels every sample 'positive' whatever it says: with the check, its negative-worded
    samples are rejected as likely_mislabelled; without it, they are accepted."""
    import json

    from conftest import ScriptedTeacher
    from test_controller import run

    class Stubborn(ScriptedTeacher):
        def _default(self, req):
            words = ["awful hate broken day", "love great wonderful day", "terrible angry broken news",
                     "happy amazing love song"]
            return json.dumps({"samples": [{"text": f"{w} {req.id[:6]} {i}", "label": "positive"}
                                           for i, w in enumerate(words)]})

    on, parts_on = run(tiny_config(**{"loop.rounds": 1}), tmp_path / "on", Stubborn(), name="on")
    off, parts_off = run(tiny_config(**{"loop.rounds": 1, "filters.label_check": False}), tmp_path / "off",
                         Stubborn(), name="off")

    def verdicts(parts, name):
        return parts.store.db.execute("SELECT text, verdict, reason FROM candidates WHERE run_id=?",
                                      (name,)).fetchall()

    checked = verdicts(parts_on, "on")
    mislabelled = [t for t, v, r in checked if r == "likely_mislabelled"]
    assert mislabelled and all(t.split()[0] in ("awful", "terrible") for t in mislabelled)
    assert not any(r == "likely_mislabelled" for _, _, r in verdicts(parts_off, "off"))
    assert off["accepted_total"] > on["accepted_total"]


def test_tasks_labelled_by_running_code_are_not_checked():
    from loop.registry import TASKS

    assert TASKS["classify"].teacher_labels
    assert not any(TASKS[name].teacher_labels for name in ("defects", "clones", "codegen", "faultloc"))


@pytest.mark.parametrize("rule, kept", [("either", [True, True, False]), ("both", [False, False, False]),
                                        ("vote", [False, True, False])])
def test_the_rule_decides_what_support_a_label_needs(rule, kept):
    """The student says neutral to everything; the 3 nearest gold texts all say negative: neither alone is
    enough for 'both', and only the label the whole vote carries passes 'vote'."""
    check = LabelCheck(ClassifyTask(load_config(None)), Neutral(), GoldVote(HashEmbedder(), GOLD, k=3), rule)
    cands = [cand("awful hate broken", lab) for lab in ("neutral", "negative", "positive")]
    check(cands, HashEmbedder().encode([c.text for c in cands]))
    assert [c.verdict == "pending" for c in cands] == kept


def test_the_vote_rule_counts_the_share_of_nearest_gold_labels():
    from loop.labelcheck import supported

    near = ["a", "a", "b", "a", "c"]
    assert supported("vote", "a", "x", near, 0.6) and not supported("vote", "a", "x", near, 0.8)
    assert not supported("vote", "b", "b", near, 0.6)  # the student's word does not count in 'vote'
    assert not supported("vote", "a", "a", [], 0.5)
    assert supported("both", "a", "a", near, 0.6) and not supported("both", "b", "b", near, 0.6)


def test_a_bad_rule_is_refused_with_its_key():
    from loop.errors import ConfigError

    with pytest.raises(ConfigError, match="filters.label_check_rule"):
        load_config(None, overrides={"filters.label_check_rule": "sometimes"})
