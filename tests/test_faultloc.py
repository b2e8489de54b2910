"""Fault localization: mutants labelled by their mutated line and by failing tests; teacher variants
checked line by line (computed, not trusted); Top-k metrics; a round with the real line student."""

import json
import random
import re

import numpy as np
import pytest

from loop.components import build_task
from loop.data import Candidate
from loop.errors import ConfigError, DataError
from loop.mutation import changed_lines, mutants
from loop.tasks.faultloc import ranks
from loop.teachers.base import GenRequest

from conftest import ScriptedTeacher

PY_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _task(code_config, **over):
    task = build_task(code_config("faultloc", **{"data.train_size": 8, "data.dev_size": 8, "data.test_size": 8,
                                                 **over}))
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


def _cand(code, line, problem):
    return Candidate(text=code, label="", request_id="r", kind="targeted",
                     meta={"problem": problem, "stated_line": line})


def test_teacher_variants_are_checked_by_diff_and_tests(code_config):
    task, splits = _task(code_config)
    pid = splits["train"][0].group
    ref = task.problems[pid].reference
    bad = next(v for v in task.problems[pid].variants if not v["passed"] and len(v["lines"]) == 1
               and v["kind"] == "mutant:" + v["kind"].split(":")[1])
    line = bad["lines"][0]
    lines = ref.split("\n")
    two = lines[:]
    two[line - 1], two[-1] = bad["code"].split("\n")[line - 1], two[-1] + "  # x"
    cands = [_cand(bad["code"], line, pid),                      # right line
             _cand(bad["code"], line + 1, pid),                  # wrong stated line
             _cand(ref, 1, pid),                                 # nothing changed
             _cand("def broken(:\n  pass", 1, pid),              # not Python
             _cand(bad["code"], line, "HumanEval/none")]         # unknown problem
    # a comment is no change once normalised; an equivalent rewrite of a line keeps the tests passing
    same = lines[:]
    same[line - 1] = same[line - 1] + "  # harmless"
    cands.append(_cand("\n".join(same), line, pid))
    ret = next(i for i, text in enumerate(lines) if text.strip().startswith("return "))
    equivalent = lines[:]
    indent = lines[ret][:len(lines[ret]) - len(lines[ret].lstrip())]
    equivalent[ret] = f"{indent}return ({lines[ret].strip()[7:]}) if True else None"
    cands.append(_cand("\n".join(equivalent), ret + 1, pid))
    task.verify(cands)
    got = [(c.verdict, c.reason, c.label) for c in cands]
    assert got[0] == ("pending", "", str(line))
    assert got[1][:2] == ("rejected", "line_mismatch")
    assert got[2][:2] == ("rejected", "unchanged")
    assert got[3][:2] == ("rejected", "syntax")
    assert got[4][:2] == ("rejected", "format")
    assert got[5][:2] == ("rejected", "unchanged")  # a comment is not a code change after normalising
    assert got[6][:2] == ("rejected", "passes_tests")  # not a bug: the tests decide


def test_a_stated_line_counts_in_the_teachers_own_code(code_config):
    """The teacher leaves out the docstring: its line numbers are its own; the label is the computed one."""
    import ast

    task, splits = _task(code_config)
    pid = splits["train"][0].group
    bad = next(v for v in task.problems[pid].variants if not v["passed"] and len(v["lines"]) == 1)
    tree = ast.parse(bad["code"])
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == task.problems[pid].entry_point)
    if isinstance(fn.body[0], ast.Expr) and isinstance(getattr(fn.body[0], "value", None), ast.Constant):
        fn.body = fn.body[1:]
    bare = ast.unparse(tree)
    changed_text = bad["code"].split("\n")[bad["lines"][0] - 1].strip()
    own = next(i for i, l in enumerate(bare.split("\n"), 1) if l.strip() == changed_text)
    cands = [_cand(bare, own, pid)]
    task.verify(cands)
    assert (cands[0].verdict, cands[0].label) == ("pending", str(bad["lines"][0]))


def test_a_stated_line_counts_in_the_references_numbering_too(code_config):
    """Told to leave the docstring out, the teacher may still number lines as in the reference it was
    shown: that number names the changed line of the completed function, so it matches; another does not."""
    import ast

    task, splits = _task(code_config)
    pid = splits["train"][0].group
    bad = next(v for v in task.problems[pid].variants if not v["passed"] and len(v["lines"]) == 1)
    tree = ast.parse(bad["code"])
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == task.problems[pid].entry_point)
    assert isinstance(fn.body[0], ast.Expr)  # HumanEval functions carry a docstring
    fn.body = fn.body[1:]
    bare = ast.unparse(tree)
    line = bad["lines"][0]
    wrong = next(n for n in range(1, 40) if n != line and (n > len(bare.split("\n"))
                                                          or bare.split("\n")[n - 1].strip()
                                                          != bad["code"].split("\n")[line - 1].strip()))
    cands = [_cand(bare, line, pid), _cand(bare, wrong, pid), _cand(bare + "\n\n" + bad["code"], line, pid)]
    task.verify(cands)
    assert (cands[0].verdict, cands[0].label) == ("pending", str(line))
    assert (cands[1].verdict, cands[1].reason) == ("rejected", "line_mismatch")
    assert (cands[2].verdict, cands[2].reason, cands[2].label) == ("pending", "", str(line))  # the last counts


def test_a_marked_line_states_it_and_a_renamed_copy_is_a_correct_base(code_config):
    """The teacher may mark its changed line with the prompts' `# <- fault` comment instead of counting;
    a variant of the renamed copy an example was shown in differs from that copy on one line."""
    task, splits = _task(code_config)
    problem = next(p for p in task.problems.values()
                   if any(v["kind"] == "renamed" for v in p.variants)
                   and any(v["kind"].endswith("+renamed") and not v["passed"] and len(v["lines"]) == 1
                           for v in p.variants))
    bad = next(v for v in problem.variants
               if v["kind"].endswith("+renamed") and not v["passed"] and len(v["lines"]) == 1)
    line = bad["lines"][0]
    lines = bad["code"].split("\n")
    marked = lines[:]
    marked[line - 1] += "    # <- fault"
    wrong_mark = lines[:]
    other = next(i for i, text in enumerate(lines) if i != line - 1 and text.strip() and not text.strip().startswith(
        ('"', "'")) and text.strip() != lines[line - 1].strip() and i > 0)
    wrong_mark[other] += "  # <- fault"
    cands = [_cand("\n".join(marked), 99, problem.task_id), _cand("\n".join(wrong_mark), 99, problem.task_id)]
    task.verify(cands)
    assert (cands[0].verdict, cands[0].reason, cands[0].label) == ("pending", "", str(line))
    assert "<- fault" not in cands[0].text  # comments do not reach the example
    assert (cands[1].verdict, cands[1].reason) == ("rejected", "line_mismatch")


def test_topk_and_mean_first_rank():
    labels = [str(i) for i in range(1, 6)]
    probs = np.array([[0.1, 0.6, 0.2, 0.1, 0.0],   # gold 2: rank 1
                      [0.5, 0.2, 0.3, 0.0, 0.0],   # gold 2: rank 3
                      [0.1, 0.1, 0.1, 0.2, 0.5]])  # gold 1: rank 3 (stable ties: first wins)
    assert ranks(probs, labels, ["2", "2", "1"]) == [1, 3, 3]


def test_mislocalized_table_names_the_fault_the_line_ranked_first_and_the_neighbourhood(code_config):
    from loop.stages import mine
    from loop.students.base import Predictions

    from conftest import HashEmbedder

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
    """Answers with one-line mutants of the reference in the prompt, stating the changed line, plus
    one with a wrong stated line."""

    name = "scripted-faultloc"

    def _default(self, req: GenRequest) -> str:
        self.counter += 1
        ref = PY_BLOCK.findall(req.messages[-1]["content"])[-1]
        out = [{"code": v.code, "line": v.lines[0]} for v in mutants(ref, random.Random(self.counter), 3)
               if len(v.lines) == 1]
        if out:
            out.append({"code": out[0]["code"], "line": out[0]["line"] + 2})
        return json.dumps({"samples": out})


@pytest.mark.slow
def test_a_round_with_the_real_line_student(code_config, tmp_path):
    from loop.components import build_student
    from loop.controller import Parts, run_loop
    from loop.store import RunStore
    from loop.tracking import Tracker

    from conftest import HashEmbedder

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
