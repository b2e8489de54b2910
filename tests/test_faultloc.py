"""Fault localization: mutants labelled by their mutated line and by failing tests; teacher variants
checked line by line (computed, not trusted); Top-k metrics; a round with the real line student."""

import json
import random
import re

import numpy as np
import pytest
from conftest import ScriptedTeacher

from loop.components import build_task
from loop.errors import ConfigError, DataError
from loop.mutation import changed_lines, mutants
from loop.records import Candidate, GenRequest
from loop.tasks.faultloc import ranks


def _task(code_config, **over):
    task = build_task(code_config("faultloc", **{"data.train_size": 8, "data.dev_size": 8,
                                                 "data.test_size": 8, **over}))
    return task, task.load_splits()


def test_examples_are_failing_one_line_mutants_split_by_problem(code_config):
    task, splits = _task(code_config)
    groups = {name: {e.group for e in exs} for name, exs in splits.items() if name != "pool"}
    names = list(groups)
    assert all(not (groups[a] & groups[b]) for i, a in enumerate(names) for b in names[i + 1:])
    assert task.labels[:3] == ["1", "2", "3"] and len(task.labels) == 40
    for ex in splits["train"] + splits["test"]:
        v = next(v for v in task.problems[ex.group].variants if v["code"] == ex.text)
        assert v["passed"] is False and v["lines"] == [int(ex.label)]  # the tests fail; the mutated line
        if "renamed" not in v["kind"]:  # (a renamed mutant differs on more lines, its fault on that one)
            assert changed_lines(task.problems[ex.group].reference, ex.text) == [int(ex.label)]


def _edit(line, original, faulty, problem):
    return Candidate(text=f"line {line}", label="", request_id="r", kind="targeted",
                     meta={"problem": problem, "stated_line": line, "original": original, "faulty": faulty})


def _fault(task, pid):
    """A failing one-line mutant of problem `pid` (not renamed): its line, the original and the faulty
    text."""
    bad = next(v for v in task.problems[pid].variants if not v["passed"] and len(v["lines"]) == 1
               and v["kind"] == "mutant:" + v["kind"].split(":")[1])
    line = bad["lines"][0]
    return bad, line, task.problems[pid].reference.split("\n")[line - 1], bad["code"].split("\n")[line - 1]


def test_teacher_edits_are_applied_and_checked_by_diff_and_tests(code_config):
    task, splits = _task(code_config)
    pid = splits["train"][0].group
    bad, line, original, faulty = _fault(task, pid)
    lines = task.problems[pid].reference.split("\n")
    ret = next(i for i, text in enumerate(lines, 1) if text.strip().startswith("return "))
    other = next(i for i, text in enumerate(lines, 1)
                 if i != line and text.strip() and text.strip() != original.strip())
    cands = [_edit(line, original, faulty, pid),                      # right
             _edit(line, original.strip(), faulty.strip(), pid),      # indentation is the original line's
             _edit(other, original, faulty, pid),                     # wrong number, the text names one line
             _edit(line, "x = undefined_thing", faulty, pid),         # original text not in the solution
             _edit(line, original, original + "  # <- fault", pid),   # a comment is no change
             _edit(line, original, "def broken(:", pid),              # not Python
             _edit(line, original, "a = 1\nb = 2", pid),              # two lines
             _edit(line, original, faulty, "HumanEval/none"),         # unknown problem
             _edit(ret, lines[ret - 1], f"return ({lines[ret - 1].strip()[7:]}) if True else None", pid)]
    task.verify(cands)
    got = [(c.verdict, c.reason, c.label) for c in cands]
    assert got[0] == ("pending", "", str(line)) and cands[0].text == bad["code"]  # the mutant, rebuilt
    assert got[1] == ("pending", "", str(line)) and cands[1].text == bad["code"]
    if sum(1 for text in lines if text.strip() == original.strip()) == 1:
        assert got[2] == ("pending", "", str(line))  # located by its text
    assert got[3][:2] == ("rejected", "line_mismatch")
    assert got[4][:2] == ("rejected", "unchanged")
    assert got[5][:2] == ("rejected", "syntax")
    assert got[6][:2] == ("rejected", "not_one_line")
    assert got[7][:2] == ("rejected", "format")
    assert got[8][:2] == ("rejected", "passes_tests")  # an equivalent rewrite is not a bug: the tests decide


def test_an_ambiguous_original_needs_the_right_number_and_numbers_copied_from_the_prompt_are_dropped(
        code_config):
    from loop.tasks.faultloc import locate, numbered

    ref = "def f(x):\n    y = x + 1\n    if y > 2:\n        y = x + 1\n    return y"
    assert locate(ref, 4, "y = x + 1") == 4 and locate(ref, 2, "y = x + 1") == 2
    assert locate(ref, 3, "y = x + 1") == 0  # on two lines, neither the stated one
    assert locate(ref, 9, " 3 | if y > 2:") == 3  # the prompt's numbering copied along
    assert numbered(ref).split("\n")[2] == "3 |     if y > 2:"
    assert locate(ref, 3, "if y > 2") == 3  # a header copied without its colon
    from loop.tasks.faultloc import edited
    assert edited(ref, 3, "if y >= 2").split("\n")[2] == "    if y >= 2:"


def test_prompts_show_the_numbered_solution_and_the_faults_as_edits(code_config):
    from loop.plan import _request

    task, splits = _task(code_config)
    ex = splits["train"][0]
    bad, line, original, faulty = _fault(task, ex.group)
    shown = type(ex)(bad["code"], str(line), group=ex.group)
    for kind, variables in (("targeted", {"exemplars": [shown]}),
                            ("self_revise", {"example": shown, "predicted": "1"})):
        req = _request(task, task.full, kind, 0, {}, **variables)
        text = req.messages[-1]["content"]
        assert f"`{original.strip()}` became `{faulty.strip()}`" in text
        assert f"{line} | {original}" in text.replace(f" {line} |", f"{line} |")
        assert req.meta["problem"] == ex.group
        assert set(req.json_schema["properties"]["samples"]["items"]["required"]) \
            == {"line", "original", "faulty"}
    other = next(e for e in splits["train"] if e.group != ex.group)
    req = _request(task, task.full, "targeted", 0, {}, exemplars=[shown, other])
    assert [line[:5] for line in req.messages[-1]["content"].split("\n")[1:3]] \
        == ["- in ", "- in "]  # a line each


def test_an_edit_of_another_shown_faults_solution_is_checked_against_that_problem(code_config):
    """The teacher may write its new fault on the line of a shown fault from another problem: the edit is
    applied to that problem's reference and its tests decide."""
    from loop.plan import _request

    task, splits = _task(code_config)
    a = splits["train"][0]
    b = next(e for e in splits["train"] if e.group != a.group
             and changed_lines(task.problems[e.group].reference, e.text) == [int(e.label)])
    bad, line, original, faulty = _fault(task, b.group)
    req = _request(task, task.full, "targeted", 0, {}, exemplars=[a, b])
    assert req.meta["problem"] == a.group and req.meta["shown"] == [b.group]
    cand = _edit(line, original, faulty, a.group)
    cand.meta.update(req.meta)
    task.verify([cand])
    assert original.strip() not in task.problems[a.group].reference  # (else the edit would name a's line)
    assert (cand.verdict, cand.label, cand.meta["problem"]) == ("pending", str(line), b.group)
    assert cand.text == bad["code"]
    lone = _edit(line, original, faulty, a.group)  # not shown: nothing names problem b
    task.verify([lone])
    assert (lone.verdict, lone.reason) == ("rejected", "line_mismatch")


def test_topk_and_mean_first_rank():
    labels = [str(i) for i in range(1, 6)]
    probs = np.array([[0.1, 0.6, 0.2, 0.1, 0.0],   # gold 2: rank 1
                      [0.5, 0.2, 0.3, 0.0, 0.0],   # gold 2: rank 3
                      [0.1, 0.1, 0.1, 0.2, 0.5]])  # gold 1: rank 3 (stable ties: first wins)
    assert ranks(probs, labels, ["2", "2", "1"]) == [1, 3, 3]


def test_mislocalized_table_names_the_fault_the_line_ranked_first_and_the_neighbourhood(code_config):
    from conftest import HashEmbedder

    from loop.records import Predictions
    from loop.stages import mine

    class FirstLine:  # puts line 1 first, except on the first function, where it is right
        def predict(self, examples):
            probs = np.full((len(examples), 40), 0.01)
            probs[:, 0] = 0.5
            probs[0, :] = 0.01
            probs[0, int(examples[0].label) - 1] = 0.5
            probs /= probs.sum(1, keepdims=True)
            return Predictions([str(int(np.argmax(p)) + 1) for p in probs], probs,
                               HashEmbedder().encode([e.text for e in examples]))

    task, splits = _task(code_config)
    mine_split = splits["dev_mine"]
    mined = mine(FirstLine(), task, task.full, mine_split, splits["train"], 1)
    rows = task.artifacts({}, splits, mined)["error_analysis/mislocalized.json"]
    wrong = [ex for ex in mine_split[1:] if ex.label != "1"]
    assert len(rows) == len(wrong) and rows
    by_code = {r["code"]: r for r in rows}
    ex = wrong[0]
    row, lines = by_code[ex.text], ex.text.split("\n")
    assert row["fault_line"] == int(ex.label) and row["fault_text"] == lines[int(ex.label) - 1].strip()
    assert row["predicted_line"] == 1 and row["predicted_text"] == lines[0].strip() and row["rank"] > 1
    assert row["problem"] == ex.group and mine_split[0].text not in by_code
    assert {r["neighbourhood"] for r in rows} <= {h.id for h in mined.hoods} | {None}
    assert any(r["neighbourhood"] is not None for r in rows)


def test_faultloc_config_rules(code_config):
    with pytest.raises(ConfigError, match="task.labels"):
        code_config("faultloc", **{"task.labels": ["a", "b"]})
    with pytest.raises(ConfigError, match="student.name"):
        code_config("faultloc", **{"student.name": "encoder"})
    with pytest.raises(ConfigError, match="loop.metric"):
        code_config("faultloc", **{"loop.metric": "macro_f1"})


def test_plain_jsonl_with_code_and_fault_lines(code_config, tmp_path):
    rows = [{"code": f"def f{i}(x):\n    y = x + {i}\n    return y * 2\n", "fault_lines": [2 + i % 2],
             "group": f"g{i // 2}"} for i in range(40)]
    path = tmp_path / "faults.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task, splits = _task(code_config, **{"data.source": str(path), "data.train_size": 6, "data.dev_size": 4,
                                         "data.test_size": 6})
    assert len(splits["train"]) == 12 and {e.label for e in splits["train"]} <= {"2", "3"}
    path.write_text(json.dumps({"code": "def f():\n    pass\n", "fault_lines": [9]}) + "\n")
    with pytest.raises(DataError, match=r"faults.jsonl:1: fault line 9"):
        _task(code_config, **{"data.source": str(path)})


class MutantTeacher(ScriptedTeacher):
    """Answers with one-line mutants of the numbered reference in the prompt as edits, stating the changed
    line, plus one with a wrong stated line and original text."""

    name = "scripted-faultloc"

    def _default(self, req: GenRequest) -> str:
        self.counter += 1
        block = re.findall(r"```\n(.*?)```", req.messages[-1]["content"], re.S)[-1]
        ref = "\n".join(line.split(" | ", 1)[1] if " | " in line else ""
                        for line in block.rstrip("\n").split("\n"))
        out = []
        for v in mutants(ref, random.Random(self.counter), 3):
            if len(v.lines) == 1:
                n = v.lines[0]
                out.append({"line": n, "original": ref.split("\n")[n - 1],
                            "faulty": v.code.split("\n")[n - 1]})
        if out:
            out.append({**out[0], "line": out[0]["line"] + 2, "original": "zzz = 0"})
        return json.dumps({"samples": out})


@pytest.mark.slow
def test_a_round_with_the_real_line_student(code_config, tmp_path):
    from conftest import HashEmbedder

    from loop.components import build_student
    from loop.controller import run_loop
    from loop.parts import Parts
    from loop.store import RunStore
    from loop.tracking import Tracker

    cfg = code_config("faultloc", **{"data.train_size": 6, "data.dev_size": 6, "data.test_size": 6,
                                     "student.epochs": 1, "student.max_length": 160, "loop.rounds": 1,
                                     "generation.targeted_requests": 3, "generation.revise_requests": 2})
    task = build_task(cfg)
    splits = task.load_splits()
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("fl", cfg.to_dict())
    student = build_student(cfg)
    parts = Parts(task=task, student=student, teacher=MutantTeacher(), embedder=HashEmbedder(), splits=splits,
                  store=store, tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment))
    summary = run_loop(cfg, parts, "fl", tmp_path / "runs" / "fl")
    page = (tmp_path / "runs" / "fl" / "report.html").read_text()  # the report of a faultloc run
    assert "mislocalized (" in page and "Test top1 against tokens spent" in page
    pred = student.predict(splits["test"])
    assert pred.probs.shape == (len(splits["test"]), 40)
    for row, ex in zip(pred.probs, splits["test"]):  # probability only on lines the function has
        assert abs(row.sum() - 1) < 1e-4 and row[len(ex.text.split("\n")):].sum() < 1e-6
    rows = store.db.execute("SELECT verdict, reason, label, meta FROM candidates").fetchall()
    reasons = {r[1] for r in rows}
    assert "line_mismatch" in reasons  # the wrong stated lines were caught
    for verdict, _, label, meta in rows:
        if verdict == "accepted":
            meta = json.loads(meta)
            assert meta["execution"] != "passed" and label == str(int(label))
    assert summary["accepted_total"] > 0 and summary["rounds_run"] == 1
    metrics = store.round_rows("fl")[1]["metrics"]
    assert {"test_top1", "test_top3", "test_top5", "test_mean_first_rank"} <= set(metrics)
    assert metrics["test_top1"] <= metrics["test_top3"] <= metrics["test_top5"]
    import mlflow

    client = mlflow.tracking.MlflowClient()
    child = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
                               "tags.round = '1'")[0]
    arts = {a.path for a in client.list_artifacts(child.info.run_id, "error_analysis")}
    assert {"error_analysis/mislocalized.json", "error_analysis/neighbourhoods.json"} <= arts
    assert "confusion_stop.png" not in {a.path for a in client.list_artifacts(child.info.run_id)}
