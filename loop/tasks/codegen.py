"""Code generation with error-driven self-revision (SEED): the student writes function bodies.

An example is one problem: `prompt PAIR_SEP completion`, where the prompt is the function's
header and docstring and the completion a body that passes the problem's tests (the
reference's, or an accepted revision's). Splits are by problem; errors are mined on the
training problems themselves (as SEED does): `dev_mine` holds the training problems.

The student is evaluated by sampling programs and running the problem's tests in the
sandbox (pass@1, pass@k). A problem is an error when most of its samples fail, and
low-confidence when its samples disagree (the pass rate is the 'probability' of pass).

The teacher (or the student itself, `task.reviser`) gets the failing program, the test
output and optionally the reference, and writes a revised program: accepted only if the
problem's prompt + the revised body passes all tests. Targeted generation asks for new
problems (a function with a docstring, and assert tests) like the failing neighbourhood's:
accepted only if the function passes its own tests.
"""

from __future__ import annotations

import ast
import hashlib
import re
import textwrap
from dataclasses import dataclass, field
from math import comb
from typing import TYPE_CHECKING, Literal

import numpy as np

from loop import isolation
from loop.data import pair_sides
from loop.errors import ConfigError
from loop.humaneval import (
    GENERATED,
    Problem,
    build_variants,
    read_problems,
    split_problems,
    support,
)
from loop.options import option
from loop.prompts import Prompts
from loop.records import PAIR_SEP, Candidate, Example, GenRequest, Predictions
from loop.sandbox import Limits, Outcome, run_many
from loop.tasks.base import Task
from loop.tasks.classify import extract_json
from loop.tasks.strength import mutant_jobs, weak_reason
from loop.teachers.student import StudentReviser

if TYPE_CHECKING:
    from loop.config import Config

PASS, FAIL = "pass", "fail"
CODE_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.S)
# what ast.parse raises on hostile code: SyntaxError, ValueError (null bytes, lone surrogates), RecursionError
# (a chain of thousands of unary operators, e.g. `return ----...1`)
UNPARSABLE = (SyntaxError, ValueError, RecursionError)


@dataclass
class CodePredictions(Predictions):
    """Predictions plus what was run: per example the sampled programs and their outcomes."""

    programs: list[list[str]] = field(default_factory=list)
    outcomes: list[list[Outcome]] = field(default_factory=list)

    @property
    def passed(self) -> list[int]:
        return [sum(o.passed for o in outs) for outs in self.outcomes]


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from n samples of which c passed (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _entry(tree: ast.Module, name: str | None) -> ast.FunctionDef | None:
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if name is not None:
        fns = [f for f in fns if f.name == name]
    return fns[-1] if fns else None


def _has_docstring(fn: ast.FunctionDef) -> bool:
    first = fn.body[0]
    return (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str))


def body_of(code: str, name: str) -> str | None:
    """The body of function `name` in `code` (docstring dropped), indented by 4 spaces, or None
    when the code does not parse, lacks the function, or defines other functions."""
    try:
        tree = ast.parse(code)
    except UNPARSABLE:
        return None
    fn = _entry(tree, name)
    defined = sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)
    if fn is None or defined > 1:
        return None
    stmts = fn.body[1:] if _has_docstring(fn) else fn.body
    if not stmts:
        return None
    lines = code.splitlines()
    body = textwrap.dedent("\n".join(lines[stmts[0].lineno - 1:fn.end_lineno]))
    return textwrap.indent(body, "    ")


def split_function(code: str) -> tuple[str, str, str] | None:
    """(prompt, body, name) of a teacher-written function: everything up to the end of its docstring,
    the rest of it, and its name; None if it does not parse or has no docstring or body."""
    try:
        tree = ast.parse(code)
    except UNPARSABLE:
        return None
    fn = _entry(tree, None)
    if fn is None or len(fn.body) < 2 or not _has_docstring(fn):
        return None
    lines = code.splitlines()
    prompt = "\n".join(lines[:fn.body[0].end_lineno]) + "\n"
    body = "\n".join(lines[fn.body[1].lineno - 1:fn.end_lineno])
    return prompt, body, fn.name


def check_source(tests: list[str]) -> str | None:
    """A HumanEval-style `check` from assert lines (each must parse and be an assert)."""
    kept = []
    for line in tests:
        try:
            tree = ast.parse(line.strip())
        except UNPARSABLE:
            return None
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
            return None
        kept.append(line.strip())
    return "def check(candidate):\n" + "".join(f"    {line}\n" for line in kept) if kept else None


class CodegenTask(Task):
    teacher_labels = False  # labels come from running the tests
    name = "codegen"
    student_kind = "generator"
    metrics = ("pass_at_1",)

    @dataclass
    class Options:
        samples: int = option(1, "programs sampled per problem to evaluate (pass@1 is their mean pass rate)",
                              ge=1)
        temperature: float = option(0.0, "sampling temperature when evaluating (0: greedy, needs samples 1)",
                                    ge=0)
        pass_k: int = option(1, "also report pass@k (k <= samples) with the unbiased estimator", ge=1)
        mine_samples: int = option(4, "programs sampled per training problem when mining (their "
                                      "disagreement is the low-confidence signal)", ge=1)
        mine_temperature: float = option(0.8, "sampling temperature when mining", ge=0)
        revise_with_reference: bool = option(True, "show the reference solution in self-revise prompts")
        reviser: Literal["teacher", "student"] = option("teacher", "who revises failing programs: teacher, "
                                                                   "or student (itself, as in SEED)")

    @staticmethod
    def config_rules(cfg: Config) -> list[tuple[bool, str, str]]:
        t = cfg.task
        return [(t.labels == [PASS, FAIL], "task.labels", "the codegen task's labels are [pass, fail]"),
                (t.pass_k <= t.samples, "task.pass_k", f"must be <= task.samples ({t.pass_k} > {t.samples})"),
                (t.temperature > 0 or t.samples == 1, "task.samples", "must be 1 when temperature is 0"),
                (cfg.mining.embedder == "fixed", "mining.embedder",
                 "codegen needs fixed (problems are embedded by the sentence embedder)")]

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.prompts = Prompts(cfg.prompts_folder())
        self.problems: dict[str, Problem] = {}
        self.held_out: set[str] = set()  # entry points of the evaluation problems
        self.limits = Limits(timeout_s=10, cpu_s=4)
        isolation.backend()  # decided, and said, once at start
        self._calls = 0

    # -- data -------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[Example]]:
        d = self.full.data
        path, problems = read_problems(d.source, self.full.resolve)
        problems = build_variants(path, problems, mutants_per_problem=d.mutants_per_problem,
                                  limits=self.limits)
        by_split = split_problems(problems, {"train": d.train_size, "dev_stop": d.dev_size,
                                             "test": d.test_size}, d.seed)
        self.problems = {p.task_id: p for p in problems}
        self.held_out = {p.entry_point for s in ("dev_stop", "test") for p in by_split[s]}
        out = {name: [Example(p.prompt + PAIR_SEP + p.canonical_solution, PASS, group=p.task_id) for p in ps]
               for name, ps in by_split.items()}
        out["dev_mine"] = list(out["train"])  # SEED mines the training problems
        out["pool"] = []
        return out

    # -- the student at work ------------------------------------------------------------------------
    def predict(self, student, examples: list[Example], mining: bool = False) -> CodePredictions:
        """Sample programs for each problem and run its tests; the pass rate is P(pass)."""
        n, temp = (self.cfg.mine_samples, self.cfg.mine_temperature) if mining else \
            (self.cfg.samples, self.cfg.temperature)
        prompts = [pair_sides(e.text)[0] for e in examples]
        self._calls += 1
        seed = self.full.student.seed * 1000 + self._calls
        outs = student.sample(prompts, n, temp, seed=seed) if examples else []
        jobs = [(prompt + body, self.problems[e.group].test, self.problems[e.group].entry_point,
                 support(self.problems[e.group]))
                for e, prompt, bodies in zip(examples, prompts, outs) for body in bodies]
        flat = iter(run_many(jobs, self.limits))
        outcomes = [[next(flat) for _ in bodies] for bodies in outs]
        rates = np.array([sum(o.passed for o in outs_) / len(outs_) for outs_ in outcomes], np.float32)
        probs = np.stack([rates, 1 - rates], 1) if len(rates) else np.zeros((0, 2), np.float32)
        programs = [[prompt + b for b in bodies] for prompt, bodies in zip(prompts, outs)]
        return CodePredictions(labels=[PASS if r >= 0.5 else FAIL for r in rates], probs=probs,
                               embeddings=np.zeros((len(examples), 1), np.float32), programs=programs,
                               outcomes=outcomes,
                               evidence=[list(zip(ps, os_)) for ps, os_ in zip(programs, outcomes)])

    def metric(self, pred: CodePredictions, examples: list[Example]) -> dict[str, float]:
        if not examples:
            return {"pass_at_1": 0.0}
        n = len(pred.outcomes[0])
        out = {"pass_at_1": float(np.mean([c / n for c in pred.passed])),
               "solved": float(np.mean([lab == PASS for lab in pred.labels]))}
        if self.cfg.pass_k > 1:
            out[f"pass_at_{self.cfg.pass_k}"] = float(np.mean([pass_at_k(n, c, self.cfg.pass_k)
                                                               for c in pred.passed]))
        return out

    # -- prompts ------------------------------------------------------------------------------------
    def common(self) -> dict:
        return {"description": self.cfg.description, "labels": self.labels}

    def messages(self, kind: str, **variables) -> list[dict]:
        return self.prompts.messages(kind, self.common(), **variables)

    @staticmethod
    def failing_attempt(example: Example, tries: list[tuple[str, Outcome]]) -> tuple[str, str]:
        """The first of the student's programs for this problem (`tries`: its sampled programs and their
        outcomes) that failed, else the first, and the test output."""
        bad = [t for t in tries if not t[1].passed] or tries
        if not bad:
            return pair_sides(example.text)[0] + "    pass\n", "(no attempt recorded)"
        program, outcome = bad[0]
        return program, outcome.output[-800:].strip() or outcome.status

    def request_vars(self, kind: str, variables: dict) -> tuple[dict, dict]:
        if kind == "self_revise":
            ex = variables["example"]
            problem = self.problems[ex.group]
            program, output = self.failing_attempt(ex, variables.get("evidence") or [])
            return ({"prompt": problem.prompt, "program": program, "output": output,
                     "reference": problem.reference if self.cfg.revise_with_reference else "",
                     "entry_point": problem.entry_point}, {"problem": problem.task_id})
        sides = map(pair_sides, (e.text for e in variables["exemplars"]))
        return {"programs": [prompt + body for prompt, body in sides]}, {}

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        if kind == "self_revise":
            item = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"],
                    "additionalProperties": False}
        else:
            item = {"type": "object", "properties": {
                "function": {"type": "string"},
                "tests": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 6}},
                "required": ["function", "tests"], "additionalProperties": False}
        return {"type": "object", "properties": {"samples": {"type": "array", "items": item, "minItems": 1,
                                                            "maxItems": n}},
                "required": ["samples"], "additionalProperties": False}

    # -- candidates -------------------------------------------------------------------------------
    def parse(self, text: str, req: GenRequest) -> list[Candidate]:
        value = extract_json(text)
        items = (value.get("samples") if isinstance(value, dict)
                 else value if isinstance(value, list) else None)
        if not items and req.kind == "self_revise":  # a reviser that answers with a code block, not JSON
            items = [{"code": m.group(1)} for m in CODE_FENCE.finditer(text)][:1] or None
        if not items:
            return [Candidate(text=text[:500], label="", request_id=req.id, kind=req.kind, verdict="rejected",
                              reason="parse")]
        return [self._candidate(item, req) for item in items]

    def _candidate(self, item, req: GenRequest) -> Candidate:
        cand = Candidate(text=str(item)[:500], label="", request_id=req.id, kind=req.kind,
                         meta=dict(req.meta))
        if req.kind == "self_revise":
            if not isinstance(item, dict) or not isinstance(item.get("code"), str):
                cand.verdict, cand.reason = "rejected", "schema"
                return cand
            problem = self.problems.get(req.meta.get("problem", ""))
            body = body_of(item["code"], problem.entry_point) if problem else None
            if body is None:
                cand.text, cand.verdict, cand.reason = item["code"][:2000], "rejected", "format"
                return cand
            cand.text = problem.prompt + PAIR_SEP + body
            return cand
        if (not isinstance(item, dict) or not isinstance(item.get("function"), str)
                or not isinstance(item.get("tests"), list)
                or not all(isinstance(t, str) for t in item["tests"])):
            cand.verdict, cand.reason = "rejected", "schema"
            return cand
        parts, test = split_function(item["function"]), check_source(item["tests"])
        if parts is None or test is None:
            cand.text, cand.verdict, cand.reason = item["function"][:2000], "rejected", "format"
            return cand
        prompt, body, name = parts
        weak = weak_reason(item["tests"], name)
        if weak:
            cand.text, cand.verdict, cand.reason = item["function"][:2000], "rejected", "weak_tests"
            cand.meta["weak_tests"] = weak
            return cand
        # surrogatepass: lone surrogates hash too
        digest = hashlib.sha1((prompt + body + test).encode("utf-8", "surrogatepass"))
        task_id = GENERATED + digest.hexdigest()[:12]
        cand.text = prompt + PAIR_SEP + body
        cand.meta.update(problem=task_id, entry_point=name, test=test)
        return cand

    def verify(self, cands: list[Candidate]) -> None:
        """Length and held-out checks, then the tests: a candidate is kept only if it passes them all."""
        todo = []
        for cand in cands:
            if cand.verdict != "pending":
                continue
            prompt, body = pair_sides(cand.text)
            new = cand.kind != "self_revise"
            name = cand.meta["entry_point"] if new else self.problems[cand.meta["problem"]].entry_point
            if not self.cfg.min_chars <= len(body) <= self.cfg.max_chars:
                cand.verdict, cand.reason = "rejected", "length"
            elif new and name in self.held_out:  # a new problem must not be an evaluation problem again
                cand.verdict, cand.reason = "rejected", "contamination"
            else:
                problem = None if new else self.problems[cand.meta["problem"]]
                test = cand.meta.pop("test") if new else problem.test
                todo.append((cand, prompt + body, test, name, support(problem) if problem else ""))
        outcomes = run_many([job[1:] for job in todo], self.limits)
        for (cand, *_), outcome in zip(todo, outcomes):
            cand.meta.update(outcome.record())
            cand.label = PASS if outcome.passed else FAIL
            if not outcome.passed:
                cand.verdict, cand.reason = "rejected", "tests_failed"
        self._check_power([(c, program, test, name) for c, program, test, name, _ in todo
                           if c.verdict == "pending" and c.kind != "self_revise"])

    def _check_power(self, new: list[tuple[Candidate, str, str, str]]) -> None:
        """A new problem's tests must fail at least one mutant of its solution, or they are `weak_tests`;
        the problems that keep them join the task's problems."""
        jobs = [mutant_jobs(program, test, name, cand.meta["problem"]) for cand, program, test, name in new]
        flat = iter(run_many([job for js in jobs for job in js], self.limits))
        for (cand, program, test, name), js in zip(new, jobs):
            caught = sum(not next(flat).passed for _ in js)
            cand.meta["mutants_caught"] = f"{caught}/{len(js)}"
            if not caught:
                cand.verdict, cand.reason = "rejected", "weak_tests"
                continue
            prompt, body = pair_sides(cand.text)
            self.problems[cand.meta["problem"]] = Problem(cand.meta["problem"], prompt, body, test, name,
                                                          reference=program)

    def artifacts(self, preds: dict, splits: dict, mined) -> dict[str, list[dict]]:
        """Per-round tables: the failing training problems with one failing program and its test output."""
        rows = []
        for ex in splits["dev_mine"]:
            tries = mined.evidence.get(ex.id) or []
            if tries and sum(o.passed for _, o in tries) * 2 < len(tries):
                program, output = self.failing_attempt(ex, tries)
                rows.append({"problem": ex.group, "passed": sum(o.passed for _, o in tries),
                             "samples": len(tries), "program": program, "output": output})
        return {"error_analysis/failing_problems.json": rows}

    def self_reviser(self, student):
        """The student revises its own failing programs (SEED) when task.reviser is student."""
        return StudentReviser(student) if self.cfg.reviser == "student" else None

    def label_schema(self) -> dict:
        raise ConfigError("filters.label_agreement: not available for codegen (the tests decide)")

    def read_label(self, text: str):
        raise ConfigError("filters.label_agreement: not available for codegen (the tests decide)")


