"""Code tasks derived from problems with tests: defect detection and clone detection.

Labels are never taken from the teacher: every example, gold or generated, is labelled by
running the problem's tests in the sandbox. The teacher writes program variants of a
problem near the student's errors, stating its intent (correct / buggy, clone /
not_clone) only as a hint; a variant must parse, keep the problem's entry point, and is
then labelled by execution (the teacher's hit rate is reported as `intent_agreement`).

- `defects`: an example is one function (with its docstring): correct if it passes, buggy if not.
- `clones`: an example is a pair of functions (docstrings removed) of one problem or two;
  a pair is a clone only if both pass the same problem's tests.

Splits are by problem: no problem is in two splits. Sizes in `data.*_size` count problems.
"""

from __future__ import annotations

import ast
import json
import random
from typing import TYPE_CHECKING, Any

from loop import isolation
from loop.errors import ConfigError
from loop.humaneval import (
    Problem,
    build_variants,
    read_problems,
    split_problems,
    support,
)
from loop.mutation import normalize
from loop.prompts import Prompts
from loop.records import PAIR_SEP, Candidate, Example, GenRequest
from loop.sandbox import Limits, run_many
from loop.tasks.base import Task
from loop.tasks.classify import extract_json, scores

if TYPE_CHECKING:
    from loop.config import Config


def strip_docstrings(code: str) -> str:
    """Normalised code without docstrings (clone pairs compare behaviour, not the shared spec)."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _docstring(fn: ast.FunctionDef) -> ast.Expr | None:
    first = fn.body[0] if fn.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return first
    return None


_IMPORTS = (ast.Import, ast.ImportFrom)


def completed(code: str, reference: str, name: str) -> str:
    """`code` completed from the reference, as the teacher was told it would be. A function defined more
    than once keeps its last definition (the one Python runs) and a repeated import its first; the
    reference's top-level imports and helper functions that the teacher left out go back in front, in
    the reference's order (without them the tests would fail on a NameError, not on the variant's
    logic); and the reference's docstring goes back into function `name` where it was left out (gold
    examples carry it: a missing docstring must not become a tell)."""
    tree = ast.parse(code)
    ref_body = ast.parse(reference).body
    last = {n.name: i for i, n in enumerate(tree.body) if isinstance(n, ast.FunctionDef)}
    first: dict[str, int] = {}
    for i, n in enumerate(tree.body):
        if isinstance(n, _IMPORTS):
            first.setdefault(ast.unparse(n), i)

    def kept(i: int, n: ast.stmt) -> bool:
        if isinstance(n, ast.FunctionDef):
            return last[n.name] == i
        return first[ast.unparse(n)] == i if isinstance(n, _IMPORTS) else True

    missing = [n for n in ref_body if isinstance(n, _IMPORTS) and ast.unparse(n) not in first
               or isinstance(n, ast.FunctionDef) and n.name not in last]
    tree.body = missing + [n for i, n in enumerate(tree.body) if kept(i, n)]
    ref = next((n for n in ref_body if isinstance(n, ast.FunctionDef) and n.name == name), None)
    doc = _docstring(ref) if ref else None
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name == name and doc is not None and _docstring(fn) is None:
            fn.body.insert(0, doc)
    return ast.unparse(tree)


def defines(code: str, name: str) -> bool:
    tree = ast.parse(code)
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def unescaped(code: str) -> str:
    """Code the teacher escaped twice (literal backslash-n where line breaks belong, a common small-model
    slip inside JSON), decoded once; any other text is returned as it is."""
    if "\n" in code or "\\n" not in code or normalize(code) is not None:
        return code
    try:
        decoded = json.loads(f'"{code}"')
    except ValueError:
        decoded = code.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"')
    return decoded if normalize(decoded) is not None else code


class CodeTask(Task):
    """Shared machinery; subclasses say what one example is and which label a verdict gives."""

    teacher_labels = False  # labels come from running the tests

    name = "code"
    LABELS: tuple[str, str] = ("", "")  # (label when the tests pass, label when they fail)

    @classmethod
    def config_rules(cls, cfg: Config) -> list[tuple[bool, str, str]]:
        return [(set(cfg.task.labels) == set(cls.LABELS), "task.labels",
                 f"the {cls.name} task's labels are {', '.join(cls.LABELS)}"),
                (not cfg.filters.label_agreement, "filters.label_agreement",
                 "code labels come from the tests, not from a teacher vote")]

    def __init__(self, cfg: Config):
        super().__init__(cfg)
        self.prompts = Prompts(cfg.prompts_folder())
        self.problems: dict[str, Problem] = {}
        self.limits = Limits(timeout_s=10, cpu_s=4)
        isolation.backend()  # decided, and said, once at start

    # -- data -------------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, list[Example]]:
        d = self.full.data
        path, problems = read_problems(d.source, self.full.resolve)
        problems = build_variants(path, problems, mutants_per_problem=d.mutants_per_problem,
                                  limits=self.limits)
        half = d.dev_size // 2
        sizes = {"train": d.train_size, "dev_mine": half, "dev_stop": d.dev_size - half, "test": d.test_size}
        by_split = split_problems(problems, sizes, d.seed)
        self.problems = {p.task_id: p for p in problems}
        rng = random.Random(d.seed)
        out = {name: [ex for p in ps for ex in self.examples(p, ps, rng)] for name, ps in by_split.items()}
        for name in out:
            rng.shuffle(out[name])
        out["pool"] = []
        return out

    def examples(self, problem: Problem, split: list[Problem], rng: random.Random) -> list[Example]:
        raise NotImplementedError

    def _pick(self, variants: list[dict], rng: random.Random) -> tuple[list[dict], list[dict]]:
        """Up to `variants_per_label` passing variants (the first one always) and failing ones."""
        k = self.full.data.variants_per_label
        good = [v for v in variants if v["passed"]]
        bad = [v for v in variants if not v["passed"]]
        if good:
            good = good[:1] + rng.sample(good[1:], min(k - 1, len(good) - 1))
        return good, rng.sample(bad, min(k, len(bad)))

    # -- prompts ------------------------------------------------------------------------------------
    def common(self) -> dict:
        return {"description": self.cfg.description, "labels": self.labels}

    def messages(self, kind: str, **variables) -> list[dict]:
        return self.prompts.messages(kind, self.common(), **variables)

    def request_vars(self, kind: str, variables: dict) -> tuple[dict, dict]:
        """Extra template variables and request meta: the problem whose variants are asked for."""
        source = (variables.get("example") if kind == "self_revise"
                  else (variables.get("exemplars") or [None])[0])
        problem = self.problems.get(source.group) if source is not None else None
        if problem is None:
            return {"reference": "", "entry_point": ""}, {}
        return ({"reference": problem.reference, "entry_point": problem.entry_point},
                {"problem": problem.task_id})

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        item = {"type": "object", "properties": {"intent": {"type": "string", "enum": self.labels},
                                                  "code": {"type": "string"}},
                "required": ["intent", "code"], "additionalProperties": False}
        return {"type": "object", "properties": {"samples": {"type": "array", "items": item,
                                                            "minItems": 1, "maxItems": n}},
                "required": ["samples"], "additionalProperties": False}

    # -- candidates -------------------------------------------------------------------------------
    def parse(self, text: str, req: GenRequest) -> list[Candidate]:
        value = extract_json(text)
        items = (value.get("samples") if isinstance(value, dict)
                 else value if isinstance(value, list) else None)
        if not items:
            return [Candidate(text=text[:500], label="", request_id=req.id, kind=req.kind, verdict="rejected",
                              reason="parse")]
        out = []
        for item in items:
            read = self.read_item(item)
            text, extra = read if read is not None else (str(item)[:500], {})
            cand = Candidate(text=text, label="", request_id=req.id, kind=req.kind,
                             meta={**req.meta, **extra})
            if read is None:
                cand.verdict, cand.reason = "rejected", "schema"
            out.append(cand)
        return out

    def read_item(self, item: Any) -> tuple[str, dict] | None:
        """A reply item's code and the meta it carries besides, or None if the item breaks the schema."""
        if not (isinstance(item, dict) and isinstance(item.get("code"), str)):
            return None
        intent = item.get("intent")  # a hint only; kept when it is text (the store writes meta as JSON)
        return unescaped(item["code"]), {"intent": intent if isinstance(intent, str) else None}

    def verify(self, cands: list[Candidate]) -> None:
        """Syntax, entry point and length checks; then the tests decide each label (one sandbox batch)."""
        todo = []
        for cand in cands:
            if cand.verdict != "pending":
                continue
            problem = self.problems.get(cand.meta.get("problem", ""))
            code = normalize(cand.text)
            if problem is None:
                cand.verdict, cand.reason = "rejected", "format"
            elif code is None:
                cand.verdict, cand.reason = "rejected", "syntax"
            elif not defines(code, problem.entry_point):
                cand.verdict, cand.reason = "rejected", "format"
            elif not self.cfg.min_chars <= len(code) <= self.cfg.max_chars:
                cand.verdict, cand.reason = "rejected", "length"
            else:
                todo.append((cand, completed(code, problem.reference, problem.entry_point), problem))
        outcomes = run_many([(code, p.test, p.entry_point, support(p)) for _, code, p in todo], self.limits)
        for (cand, code, problem), outcome in zip(todo, outcomes):
            cand.label = self.LABELS[0] if outcome.passed else self.LABELS[1]
            cand.meta.update(outcome.record())
            cand.meta["intent_agrees"] = cand.meta.get("intent") == cand.label
            cand.text = self.render(code, problem)

    def render(self, code: str, problem: Problem) -> str:
        """The example text of a verified variant."""
        raise NotImplementedError

    def metric(self, pred, examples: list[Example]) -> dict[str, float]:
        return scores(pred.labels, [e.label for e in examples], self.labels)

    def label_schema(self) -> dict:  # blind labelling does not apply: the tests label code
        raise ConfigError("filters.label_agreement: not available for code tasks")

    def read_label(self, text: str) -> Any:
        raise ConfigError("filters.label_agreement: not available for code tasks")


class DefectsTask(CodeTask):
    """Is this function correct or buggy? One function per example, docstring included."""

    name = "defects"
    LABELS = ("correct", "buggy")

    def examples(self, problem: Problem, split: list[Problem], rng: random.Random) -> list[Example]:
        good, bad = self._pick(problem.variants, rng)
        return ([Example(v["code"], "correct", group=problem.task_id) for v in good]
                + [Example(v["code"], "buggy", group=problem.task_id) for v in bad])

    def render(self, code: str, problem: Problem) -> str:
        return code  # already completed from the reference, docstring included


class ClonesTask(CodeTask):
    """Do these two functions do the same thing? A pair (reference side first), docstrings removed."""

    student_kind = "pair_classifier"

    name = "clones"
    LABELS = ("clone", "not_clone")

    def examples(self, problem: Problem, split: list[Problem], rng: random.Random) -> list[Example]:
        ref = strip_docstrings(problem.reference)
        good, bad = self._pick(problem.variants[1:], rng)
        pairs = [(ref + PAIR_SEP + strip_docstrings(v["code"]), "clone") for v in good]
        pairs += [(ref + PAIR_SEP + strip_docstrings(v["code"]), "not_clone") for v in bad[:-1] or bad]
        others = [p for p in split if p.task_id != problem.task_id]
        if others and len(bad) > 1:  # one easy negative: another problem's solution
            pairs.append((ref + PAIR_SEP + strip_docstrings(rng.choice(others).reference), "not_clone"))
        return [Example(text, label, group=problem.task_id) for text, label in pairs]

    def render(self, code: str, problem: Problem) -> str:
        return strip_docstrings(problem.reference) + PAIR_SEP + strip_docstrings(code)
