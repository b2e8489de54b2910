"""Code generation with self-revision (SEED): program parts, pass@k, execution-checked revisions,
new problems with their own tests, the student as its own reviser."""

import json
import re

import mlflow
import pytest
from conftest import ROOT, HashEmbedder, ScriptedTeacher

from loop.components import build_task
from loop.config import load_config
from loop.controller import run_loop
from loop.errors import ConfigError
from loop.parts import Parts
from loop.records import PAIR_SEP
from loop.sandbox import STATUSES, run_tests
from loop.store import RunStore
from loop.students.causal_lm import cut
from loop.tasks.codegen import body_of, check_source, pass_at_k, split_function
from loop.teachers.student import StudentReviser
from loop.tracking import Tracker

PY_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_program_parts():
    code = ('import math\n\ndef f(x: int) -> int:\n    """Twice x.\n    >>> f(2)\n    4\n    """\n'
            '    y = x\n    return y * 2\n')
    prompt, body, name = split_function(code)
    assert name == "f" and prompt.endswith('    """\n') and body == "    y = x\n    return y * 2"
    assert prompt.startswith("import math")
    assert split_function("def f(x):\n    return x\n") is None  # no docstring: no prompt to learn from
    assert body_of("def g(a):\n  if a:\n    return 1\n  return 2\n", "g") \
        == "    if a:\n      return 1\n    return 2"
    assert body_of("def g(a):\n    return a\n", "h") is None
    assert body_of("def helper():\n    pass\ndef g(a):\n    return a\n", "g") is None  # extra functions
    assert body_of("def g(a:\n", "g") is None
    assert check_source(["assert f(1) == 2", " assert f(0) == 0"]).count("    assert") == 2
    assert check_source(["f(1)"]) is None and check_source(["assert (("]) is None and check_source([]) is None
    assert cut("```\nmore") == "" and cut("    return 1\n\ndef other():\n    pass") == "    return 1"


def test_pass_at_k_is_the_unbiased_estimate():
    assert pass_at_k(5, 0, 1) == 0.0 and pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(3, 2, 2) == 1.0


class FakeCoder:
    """A student that writes the right body only for problems it has 'learned': training examples
    whose problem number is even, and every generated example. Everything else gets `return None`."""

    def __init__(self):
        self.known: dict[str, str] = {}
        self.cfg = type("C", (), {"model": "fake", "seed": 0})()
        self.fits = 0
        self.chats: list = []

    def fit(self, examples):
        self.fits += 1
        self.known = {}
        for e in examples:
            prompt, body = e.text.split(PAIR_SEP)
            if e.source == "generated" or int(e.group.rsplit("/", 1)[-1]) % 2 == 0:
                self.known[prompt] = body

    def sample(self, prompts, n=1, temperature=0.0, seed=0):
        return [[self.known.get(p, "    return None")] * n for p in prompts]

    def predict(self, examples):
        raise AssertionError("codegen asks the task to predict, not the student")

    def save(self, path):
        pass

    # the reviser side
    tokenizer = type("T", (), {"apply_chat_template": staticmethod(lambda m, **kw: m[-1]["content"])})()

    def count_tokens(self, text):
        return len(text.split())

    def fingerprint(self):
        return str(self.fits)

    def chat(self, messages, max_tokens, temperature, seed=0):
        self.chats.append(messages)
        return ["Revised:\n```python\n" + PY_BLOCK.findall(m[-1]["content"])[-1].rstrip() + "  # mine\n```"
                for m in messages]


class CodegenTeacher(ScriptedTeacher):
    """Revises with the reference shown in the prompt (and now and then a broken program);
    targeted requests get one new problem that passes its tests, one that fails them, and one
    reusing a held-out problem's name."""

    name = "scripted-codegen"

    def __init__(self, held_out_name: str):
        super().__init__()
        self.held_out_name = held_out_name

    def _default(self, req):
        self.counter += 1
        if req.kind == "self_revise":
            # the reference, with a trace of revision (a copy of it would be a duplicate of the training data)
            ref = PY_BLOCK.findall(req.messages[-1]["content"])[-1].rstrip() + f"  # revised {self.counter}\n"
            samples = [{"code": ref}]
            if self.counter % 2:
                samples.append({"code": ref.replace("return", "return None and", 1)})
            return json.dumps({"samples": samples})
        k = self.counter
        good = (f'def add_{k}(x: int) -> int:\n    """Add {k}.\n    >>> add_{k}(0)\n    {k}\n    """\n'
                f'    return x + {k}\n')
        bad = f'def sub_{k}(x: int) -> int:\n    """Subtract {k}."""\n    return x + {k}\n'
        held = f'def {self.held_out_name}(x):\n    """Same name as a held-out problem."""\n    return x\n'
        return json.dumps({"samples": [
            {"function": good, "tests": [f"assert add_{k}(1) == {1 + k}", f"assert add_{k}(-{k}) == 0"]},
            {"function": bad, "tests": [f"assert sub_{k}({k}) == 0"]},
            {"function": held, "tests": [f"assert {self.held_out_name}(1) == 1"]}]})


@pytest.fixture
def codegen_config(tmp_path, problems_file):
    def make(**overrides):
        base = {"data.source": str(problems_file), "data.train_size": 10, "data.dev_size": 4,
                "data.test_size": 6, "data.mutants_per_problem": 4,
                "tracking.uri": f"sqlite:///{tmp_path}/mlruns/mlflow.db", "run.dir": str(tmp_path / "runs"),
                "loop.rounds": 2, "loop.patience": 5, "generation.targeted_requests": 2,
                "generation.revise_requests": 4, "task.mine_samples": 2}
        base.update(overrides)
        return load_config(str(ROOT / "configs" / "seed-codegen.yaml"), base)
    return make


def _parts(cfg, tmp_path, teacher, student, reviser=None):
    task = build_task(cfg)
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("g", cfg.to_dict())
    return Parts(task=task, student=student, teacher=teacher, embedder=HashEmbedder(),
                 splits=task.load_splits(), store=store,
                 tracker=Tracker(cfg.tracking.uri, cfg.tracking.experiment), reviser=reviser)


def test_codegen_splits_are_problems_and_errors_are_mined_on_training_problems(codegen_config):
    task = build_task(codegen_config())
    splits = task.load_splits()
    groups = {name: {e.group for e in splits[name]} for name in ("train", "dev_stop", "test")}
    assert len(groups["train"]) == 10 and not groups["train"] & groups["test"] \
        and not groups["dev_stop"] & groups["test"]
    assert [e.id for e in splits["dev_mine"]] == [e.id for e in splits["train"]]
    for e in splits["train"][:3]:  # prompt + reference body passes the tests
        prompt, body = e.text.split(PAIR_SEP)
        p = task.problems[e.group]
        assert run_tests(prompt + body, p.test, p.entry_point).passed
    student = FakeCoder()
    student.fit(splits["train"])
    pred = task.predict(student, splits["train"], mining=True)
    assert len(pred.outcomes[0]) == 2  # mine_samples
    learned = [e.group for e in splits["train"] if int(e.group.split("/")[1]) % 2 == 0]
    for e, lab in zip(splits["train"], pred.labels):
        assert (lab == "pass") == (e.group in learned)
    metrics = task.metric(pred, splits["train"])
    assert metrics["pass_at_1"] == pytest.approx(len(learned) / 10)


def test_a_codegen_round_keeps_only_programs_that_pass(codegen_config, tmp_path):
    cfg = codegen_config()
    task = build_task(cfg)
    held = task.load_splits()["test"][0].group
    teacher = CodegenTeacher(held_out_name="")
    parts = _parts(cfg, tmp_path, teacher, FakeCoder())
    teacher.held_out_name = parts.task.problems[held].entry_point
    summary = run_loop(cfg, parts, "g", tmp_path / "runs" / "g")
    train_groups = {e.group for e in parts.splits["train"]}
    failing = {e.group for e in parts.splits["train"] if int(e.group.split("/")[1]) % 2}
    revise = [r for call in teacher.calls for r in call if r.kind == "self_revise"]
    # only failing training problems are revised, and the prompt shows the failing program and its output
    assert revise and {r.meta["problem"] for r in revise} <= failing
    assert all("return None" in r.messages[-1]["content"] and "Test output" in r.messages[-1]["content"]
               for r in revise)
    accepted = parts.store.accepted("g")
    assert summary["accepted_total"] == len(accepted) > 0
    # the run's report shows the failing problems and the programs bought for them
    page = (tmp_path / "runs" / "g" / "report.html").read_text()
    assert "failing problems (" in page and "<h3>Round 1</h3>" in page and "pass_at_1" in page
    kinds = {"revised": 0, "new": 0}
    for ex in accepted:
        prompt, body = ex.text.split(PAIR_SEP)
        problem = parts.task.problems[ex.group]
        assert run_tests(prompt + body, problem.test, problem.entry_point).passed
        kinds["revised" if ex.group in train_groups else "new"] += 1
    assert kinds["revised"] > 0 and kinds["new"] > 0
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name("loop").experiment_id
    r1 = client.search_runs([exp], "tags.round = '1'")[0]
    m = r1.data.metrics
    assert m["rejected/rejected_tests_failed"] > 0 and m["rejected/rejected_contamination"] > 0
    assert "test_pass_at_1" in m
    r2 = client.search_runs([exp], "tags.round = '2'")[0]
    # the revised programs taught the student its failing training problems: fewer errors next round
    assert r2.data.metrics["errors"] < m["errors"]
    local = client.download_artifacts(r1.info.run_id, "error_analysis/failing_problems.json", str(tmp_path))
    rows = json.load(open(local))
    assert rows["data"] and all("return None" in row[rows["columns"].index("program")]
                                for row in rows["data"])


def test_the_student_can_revise_its_own_programs(codegen_config, tmp_path):
    cfg = codegen_config(**{"task.reviser": "student", "loop.rounds": 1})
    student = FakeCoder()
    teacher = CodegenTeacher(held_out_name="nothing_held_out")
    parts = _parts(cfg, tmp_path, teacher, student, reviser=StudentReviser(student))
    run_loop(cfg, parts, "g", tmp_path / "runs" / "g")
    assert student.chats and all(r.kind == "targeted" for call in teacher.calls for r in call)
    revised = [e for e in parts.store.accepted("g") if e.group in {x.group for x in parts.splits["train"]}]
    assert revised  # a reply in a code block (not JSON) is read too
    spent = parts.store.spent("g")
    assert spent.tokens > 0  # the student's own tokens count against the budget


def test_codegen_settings_are_checked(codegen_config):
    with pytest.raises(ConfigError, match="student.name"):
        codegen_config(**{"student.name": "encoder"})
    with pytest.raises(ConfigError, match="mining.embedder"):
        codegen_config(**{"mining.embedder": "student"})
    with pytest.raises(ConfigError, match="task.pass_k"):
        codegen_config(**{"task.pass_k": 3})
    with pytest.raises(ConfigError, match="task.samples"):
        codegen_config(**{"task.samples": 4})  # sampling 4 greedy programs is 4 times the same
    with pytest.raises(ConfigError, match="task.reviser"):
        codegen_config(**{"task.reviser": "someone"})
    with pytest.raises(ConfigError, match="labels"):
        build_task(codegen_config(**{"task.labels": ["fail", "pass"]}))


def test_pass_at_k_from_sampled_programs(codegen_config):
    cfg = codegen_config(**{"task.samples": 4, "task.temperature": 0.8, "task.pass_k": 2})
    task = build_task(cfg)
    splits = task.load_splits()

    class Half(FakeCoder):  # right on every other sample
        def sample(self, prompts, n=1, temperature=0.0, seed=0):
            return [[self.known.get(p, "    return None") if i % 2 else "    return None" for i in range(n)]
                    for p in prompts]

    student = Half()
    student.known = {e.text.split(PAIR_SEP)[0]: e.text.split(PAIR_SEP)[1] for e in splits["test"]}
    metrics = task.metric(task.predict(student, splits["test"]), splits["test"])
    assert metrics["pass_at_1"] == pytest.approx(0.5)
    assert metrics["pass_at_2"] == pytest.approx(1 - 1 / 6)


@pytest.mark.slow
def test_real_student_trains_samples_and_revises(codegen_config, tmp_path):
    """SmolLM2-135M with LoRA: a fit changes the adapter, sampling returns bodies, the sandbox judges them."""
    cfg = codegen_config(**{"student.steps": 2, "student.max_new_tokens": 48, "task.mine_samples": 2})
    from loop.components import build_student

    task = build_task(cfg)
    splits = task.load_splits()
    student = build_student(cfg)
    before = student.fingerprint()
    student.fit(splits["train"][:4])
    assert student.steps_done == 2 and student.fingerprint() != before
    pred = task.predict(student, splits["test"][:3], mining=True)
    assert len(pred.programs) == 3 and all(len(p) == 2 for p in pred.programs)
    assert all(o.status in set(STATUSES) - {"completed"} for outs in pred.outcomes for o in outs)
    reviser = StudentReviser(student)
    shown = {"example": splits["test"][0], "evidence": pred.evidence[0]}  # its own sampled programs
    req_messages = task.messages("self_revise", n=1, **task.request_vars("self_revise", shown)[0])
    assert pred.programs[0][0] in req_messages[-1]["content"] or any(o.passed for o in pred.outcomes[0])
    from loop.records import GenRequest

    res = reviser.generate([GenRequest(messages=req_messages, max_tokens=16, temperature=0.0, top_p=1.0,
                                       seed=0, kind="self_revise")])
    assert res[0].completion_tokens <= 16 and res[0].prompt_tokens > 100
    student.save(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()

