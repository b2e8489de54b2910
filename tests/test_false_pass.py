"""No trick passes a wrong program through any task's verify path, and weak tests are refused.

The corpus is loop/bench/programs.py's FALSE_PASSES: wrong solutions of `add` (a - b) with a trick
(early exits in every form, results equal to everything, a killed judge, a forged verdict, ...).
"""

import json

import pytest
from conftest import ROOT

from loop.bench.programs import ADD, CHECK, FALSE_PASSES
from loop.components import build_task
from loop.config import load_config
from loop.humaneval import Problem
from loop.records import PAIR_SEP, Candidate, GenRequest
from loop.sandbox import Limits

PROMPT = 'def add(a, b):\n    """Add."""\n'
TRICKS = sorted(FALSE_PASSES)
FAST = Limits(timeout_s=4, cpu_s=2)


def _with_add(task):
    task.problems["t/add"] = Problem("t/add", PROMPT, "    return a + b\n", CHECK, "add", reference=ADD)
    task.limits = FAST
    return task


def _cand(text, kind="targeted", **meta):
    return Candidate(text=text, label="", request_id="r", kind=kind, meta={"problem": "t/add", **meta})


@pytest.mark.parametrize("name,fail_label", [("defects", "buggy"), ("clones", "not_clone")])
def test_tricks_are_labelled_as_failing_code(code_config, name, fail_label):
    task = _with_add(build_task(code_config(name, **{"task.max_chars": 5000})))
    cands = [_cand(FALSE_PASSES[t], intent="correct") for t in TRICKS] + [_cand(ADD, intent="correct")]
    task.verify(cands)
    got = {t: (c.label, c.meta.get("execution")) for t, c in zip(TRICKS + ["honest"], cands)}
    assert got.pop("honest")[1] == "passed"
    assert all(label == fail_label and execution != "passed" for label, execution in got.values()), got


@pytest.fixture
def codegen(code_config, problems_file, tmp_path):
    cfg = load_config(str(ROOT / "configs" / "seed-codegen.yaml"), {
        "data.source": str(problems_file), "data.train_size": 10, "data.dev_size": 4, "data.test_size": 6,
        "data.mutants_per_problem": 4, "run.dir": str(tmp_path / "runs"), "task.max_chars": 5000})
    task = build_task(cfg)
    task.load_splits()
    return _with_add(task)


def test_tricks_never_make_a_revision_or_a_new_problem_pass(codegen):
    revisions = [_cand("" + PAIR_SEP + FALSE_PASSES[t], kind="self_revise") for t in TRICKS]
    new = [_cand(PAIR_SEP + FALSE_PASSES[t], problem=f"generated/{i}", entry_point="add", test=CHECK)
           for i, t in enumerate(TRICKS)]
    codegen.verify(revisions + new)
    got = {c.meta["problem"] + ":" + c.kind: (c.verdict, c.reason) for c in revisions + new}
    assert all(v == ("rejected", "tests_failed") for v in got.values()), got
    honest = _cand(PAIR_SEP + ADD, kind="self_revise")
    codegen.verify([honest])
    assert honest.verdict == "pending" and honest.label == "pass"


def _reply(function, tests):
    return json.dumps({"samples": [{"function": function, "tests": tests}]})


@pytest.mark.parametrize("tests,why", [
    (["assert True"], "does not compare"),
    (["assert 1"], "does not compare"),
    (["assert double(2) == double(2)"], "compares no concrete value"),
    (["assert double(2)"], "does not compare"),
    (["assert __import__('os') == 1"], "uses the name __import__"),
    (["assert double(2).real == 4"], "uses Attribute"),
    (["assert [x for x in [1]] == [double(0)]"], "uses ListComp"),
])
def test_tests_that_check_nothing_are_weak(codegen, tests, why):
    function = 'def double(x):\n    """Twice x."""\n    return x - x\n'
    req = GenRequest(messages=[], max_tokens=100, temperature=0.0, top_p=1.0, seed=0, id="q")
    [cand] = codegen.parse(_reply(function, tests), req)
    assert (cand.verdict, cand.reason) == ("rejected", "weak_tests") and why in cand.meta["weak_tests"]


def test_tests_that_no_mutant_fails_are_weak_and_strong_ones_are_kept(codegen):
    function = 'def shift(x):\n    """x, unchanged."""\n    return x + 0\n'
    req = GenRequest(messages=[], max_tokens=100, temperature=0.0, top_p=1.0, seed=0, id="q")
    [weak] = codegen.parse(_reply(function, ["assert shift(0) >= -5", "assert shift(1) < 10"]), req)
    [strong] = codegen.parse(_reply(function, ["assert shift(0) == 0", "assert shift(7) == 7"]), req)
    codegen.verify([weak, strong])
    assert (weak.verdict, weak.reason) == ("rejected", "weak_tests") \
        and weak.meta["mutants_caught"].startswith("0/")
    assert strong.verdict == "pending" and strong.meta["problem"] in codegen.problems


@pytest.mark.parametrize("faulty", ["return __import__('os')._exit(0)", "return __import__('sys').exit(0)",
                                    "return __import__('atexit').register(__import__('os')._exit, 0)"])
def test_faultloc_never_takes_an_exit_for_passing_tests(code_config, faulty):
    task = _with_add(build_task(code_config("faultloc")))
    cand = Candidate(text="", label="", request_id="r", kind="targeted",
                     meta={"problem": "t/add", "stated_line": 2, "original": "return a + b",
                           "faulty": faulty})
    honest = Candidate(text="", label="", request_id="r", kind="targeted",
                       meta={"problem": "t/add", "stated_line": 2, "original": "return a + b",
                             "faulty": "return b + a"})
    task.verify([cand, honest])
    assert cand.meta["execution"] != "passed" and cand.label == "2"
    assert honest.meta["execution"] == "passed" and honest.reason == "passes_tests"
