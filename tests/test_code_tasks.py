"""Defect and clone detection: splits by problem, execution-decided labels, the loop on code."""

import json

from loop.components import build_task
from loop.records import PAIR_SEP, Candidate, GenRequest
from loop.sandbox import run_tests


def test_defect_splits_are_by_problem_and_labelled_by_tests(code_config):
    task = build_task(code_config())
    splits = task.load_splits()
    groups = {name: {e.group for e in splits[name]} for name in ("train", "dev_mine", "dev_stop", "test")}
    assert [len(g) for g in groups.values()] == [8, 4, 4, 8]
    names = list(groups)
    assert all(not groups[a] & groups[b] for i, a in enumerate(names) for b in names[i + 1:])
    labels = {e.label for name in names for e in splits[name]}
    assert labels == {"correct", "buggy"}
    for ex in splits["train"][:10]:  # the label is what the tests say
        problem = task.problems[ex.group]
        assert run_tests(ex.text, problem.test, problem.entry_point).passed == (ex.label == "correct")


def test_clone_pairs_are_labelled_by_both_sides_passing(code_config):
    task = build_task(code_config("clones"))
    splits = task.load_splits()
    train = splits["train"]
    assert {e.label for e in train} == {"clone", "not_clone"}
    for ex in train[:10]:
        a, b = ex.text.split(PAIR_SEP)
        assert '"""' not in a + b  # docstrings removed: the pair compares behaviour
        problem = task.problems[ex.group]
        if ex.label == "clone":
            assert run_tests(b, problem.test, problem.entry_point).passed


def _cand(code, problem):
    return Candidate(text=code, label="", request_id="r", kind="targeted", meta={"problem": problem,
                                                                                 "intent": "buggy"})


def test_verify_labels_by_execution_and_rejects_broken_code(code_config):
    task = build_task(code_config())
    task.load_splits()
    pid = "HumanEval/2"  # truncate_number: return number % 1.0
    ref = task.problems[pid].reference
    cands = [_cand(ref, pid), _cand(ref.replace("% 1.0", "% 2.0"), pid), _cand("def truncate_number(:", pid),
             _cand("def other(x):\n    return x", pid), _cand(ref, "HumanEval/999")]
    task.verify(cands)
    assert [(c.label, c.reason) for c in cands] == [("correct", ""), ("buggy", ""), ("", "syntax"),
                                                    ("", "format"), ("", "format")]
    assert cands[0].meta["intent_agrees"] is False and cands[1].meta["intent_agrees"] is True
    bare = [_cand("def truncate_number(number: float) -> float:\n    return number % 1.0", pid)]
    task.verify(bare)  # the teacher left the docstring out: the example gets the problem's back
    assert bare[0].label == "correct" and '"""' in bare[0].text \
        and "Given a positive floating point" in bare[0].text
    clones = build_task(code_config("clones"))
    clones.load_splits()
    pair = [_cand(ref, pid)]
    clones.verify(pair)
    assert pair[0].label == "clone" and PAIR_SEP in pair[0].text


def test_a_variant_is_completed_from_the_reference_before_the_tests_run(code_config):
    """A left-out helper or import goes back (the tests judge the logic, not a NameError); a function
    written twice keeps its last definition, as Python would run it."""
    task = build_task(code_config())
    task.load_splits()
    pid = "HumanEval/10"  # make_palindrome calls the helper is_palindrome, defined before it
    ref = task.problems[pid].reference
    assert "def is_palindrome" in ref
    body = ref[ref.index("def make_palindrome"):]
    no_helper = _cand(body, pid)
    twice = _cand(body.replace("+= 1", "+= 2") + "\n\n" + body, pid)  # a bug, then the correct one again
    task.verify([no_helper, twice])
    assert (no_helper.label, no_helper.reason) == ("correct", "")
    assert no_helper.text.index("def is_palindrome") < no_helper.text.index("def make_palindrome")
    assert twice.label == "correct" and twice.text.count("def make_palindrome") == 1
    typed = task.problems["HumanEval/0"].reference  # uses List from typing
    assert typed.startswith("from typing import List")
    no_import = _cand(typed[typed.index("def "):], "HumanEval/0")
    task.verify([no_import])
    assert no_import.label == "correct" and no_import.text.startswith("from typing import List")


def test_parse_reads_code_samples_and_counts_bad_ones(code_config):
    task = build_task(code_config())
    req = GenRequest(messages=[], max_tokens=10, temperature=0, top_p=1, seed=0,
                     meta={"problem": "HumanEval/2"})
    good = task.parse(json.dumps({"samples": [{"intent": "buggy", "code": "def f():\n    pass"}, {"x": 1}]}),
                      req)
    assert [c.verdict for c in good] == ["pending", "rejected"] and good[1].reason == "schema"
    assert good[0].meta["problem"] == "HumanEval/2"
    assert task.parse("no json here", req)[0].reason == "parse"


def test_code_escaped_twice_is_decoded_once(code_config):
    """A teacher that writes literal backslash-n inside the JSON string still gives runnable code."""
    task = build_task(code_config())
    task.load_splits()
    req = GenRequest(messages=[], max_tokens=10, temperature=0, top_p=1, seed=0,
                     meta={"problem": "HumanEval/2"})
    code = 'def truncate_number(number: float) -> float:\n    return number % 2.0 if "x" else 0'
    broken = "def f(:\n    pass"
    escaped = [json.dumps(c)[1:-1] for c in (code, broken)]  # the text holds backslash-n, not line breaks
    assert "\n" not in escaped[0]
    reply = json.dumps({"samples": [{"intent": "buggy", "code": e} for e in escaped]})
    cands = task.parse(reply, req)
    assert cands[0].text == code
    assert cands[1].text == escaped[1]  # no parse either way: left as written
    task.verify(cands)
    assert (cands[0].label, cands[0].reason) == ("buggy", "") and cands[1].reason == "syntax"
