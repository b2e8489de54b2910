"""Fault localization: given a buggy function, rank its lines by how likely each holds the fault.

Examples are one-site mutants of HumanEval reference solutions (or any problems file of the
same shape) whose tests fail in the sandbox; the faulty line is known exactly from the
mutation (the one line that differs from the reference). The label is that line's number
(1-based, in the function as shown, docstring included), so a line is a class: the
student scores every line and the metrics are Top-1/3/5 and the mean first rank.

The teacher writes faults into a problem's reference, shown with numbered lines, as line edits:
the line's number, the original line and the faulty line that replaces it. The loop applies the
edit: the original text must be on the stated line (or on exactly one line, when the number is
off) of that reference, or of the reference of a fault the prompt showed; the faulty text must
be one line that parses and changes the code; and the problem's tests must fail. The label is
the line the diff shows, computed, never the stated one. Self-revision asks for a fault of the
same kind as a mislocalized example's, on another line.

Any JSONL whose rows have `code` and `fault_lines` (1-based line numbers; the first is the
label; an optional `group` keeps related rows in one split) works as `data.source` too. Such
rows carry no tests, so generated variants of them cannot be checked and are rejected
('format'): with such data the loop's generation needs a problems file.
"""

from __future__ import annotations

import io
import random
import re
import tokenize
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from loop.data import iter_jsonl
from loop.errors import DataError
from loop.humaneval import Problem, support
from loop.mutation import changed_lines, normalize
from loop.options import option
from loop.records import Candidate, Example
from loop.sandbox import run_many
from loop.tasks.code import CodeTask

if TYPE_CHECKING:
    from loop.config import Config, TaskConfig

NUMBERED = re.compile(r"^\s*\d+\s*\|\s?")  # a line copied with the number the prompt showed it with


def _without_comment(line: str) -> str:
    text = line.strip()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return text[:tok.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):  # an unclosed bracket: the comment, if any, came first
        pass
    return text


def _line_form(line: str) -> str:
    """One source line without its comment, as `ast.unparse` would write it (a block header gets a body
    to parse), else its whitespace-collapsed text; `elif` / `else` / `except` headers are compared as text."""
    text = _without_comment(line)
    if text.endswith(":"):
        text += " pass"
    return normalize(text) or " ".join(text.split())


def _bare(line: str) -> str:
    return NUMBERED.sub("", line, count=1).strip()


def numbered(code: str) -> str:
    """Code with its 1-based line numbers in front, as the prompts show a solution."""
    lines = code.split("\n")
    width = len(str(len(lines)))
    return "\n".join(f"{i:>{width}} | {line}" for i, line in enumerate(lines, 1))


def locate(reference: str, stated: int, original: str) -> int:
    """The reference line an edit names: the stated number where the original text is on that line, else
    the one line that holds the original text (a miscounted number), else 0 (the edit names no line)."""
    text = _bare(original)
    if not text:
        return 0
    forms = {_line_form(text), _line_form(text + ":")}  # a block header copied without its colon
    hits = [i for i, line in enumerate(reference.split("\n"), 1)
            if line.strip() and _line_form(line) in forms]
    return stated if stated in hits else hits[0] if len(hits) == 1 else 0


def edited(reference: str, line: int, faulty: str) -> str:
    """The reference with line `line` replaced by `faulty`, indented as the line it replaces (and ending in
    a colon where that line is a block header and the teacher left the colon out)."""
    lines = reference.split("\n")
    old, new = lines[line - 1], _bare(faulty)
    if _without_comment(old).endswith(":") and not _without_comment(new).endswith(":"):
        new = _without_comment(new) + ":"
    lines[line - 1] = old[:len(old) - len(old.lstrip())] + new
    return "\n".join(lines)


def ranks(probs: np.ndarray, labels: list[str], gold: list[str]) -> list[int]:
    """1-based rank of the faulty line in each function's ranking."""
    out = []
    for row, g in zip(probs, gold):
        order = np.argsort(-row, kind="stable")
        out.append(int(np.flatnonzero(order == labels.index(g))[0]) + 1)
    return out


class FaultLocTask(CodeTask):
    name = "faultloc"
    student_kind = "line_scorer"
    metrics = ("top1",)
    confusion = False  # a line-number x line-number matrix says nothing; the mislocalized table does

    @dataclass
    class Options:
        max_lines: int = option(40, "lines ranked per function (its labels are the line numbers "
                                    "1..max_lines)", ge=2)

    @classmethod
    def derived_labels(cls, task: TaskConfig) -> list[str]:
        """A line is a class: the labels are the line numbers."""
        return [str(i) for i in range(1, task.max_lines + 1)]

    @classmethod
    def config_rules(cls, cfg: Config) -> list[tuple[bool, str, str]]:
        return [(not cfg.filters.label_agreement, "filters.label_agreement",
                 "code labels come from the tests, not from a teacher vote")]

    def __init__(self, cfg: Config):
        self.LABELS = tuple(cfg.task.labels)
        super().__init__(cfg)

    def load_splits(self) -> dict[str, list[Example]]:
        d = self.full.data
        if d.source != "humaneval":
            path = self.full.resolve(d.source)
            first = next(iter_jsonl(path), (0, {}))[1] if path.is_file() else {}
            if "code" in first:
                return self._plain_splits(path)
        return super().load_splits()

    def _plain_splits(self, path) -> dict[str, list[Example]]:
        """Rows of `code` + `fault_lines`, split by `group` (or by row) with the data seed."""
        d, groups = self.full.data, {}
        for lineno, row in iter_jsonl(path):
            lines = row.get("fault_lines")
            if not isinstance(row.get("code"), str) or not isinstance(lines, list) or not lines \
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in lines):
                raise DataError(f"{path}:{lineno}: needs 'code' (text) and 'fault_lines' (a list of line "
                                "numbers)")
            if not 1 <= lines[0] <= min(self.cfg.max_lines, len(row["code"].split("\n"))):
                raise DataError(f"{path}:{lineno}: fault line {lines[0]} is outside the function's first "
                                f"{self.cfg.max_lines} lines (task.max_lines)")
            group = str(row.get("group", f"row{lineno}"))
            groups.setdefault(group, []).append(Example(row["code"], str(lines[0]), group=group))
        keys = sorted(groups)
        random.Random(d.seed).shuffle(keys)
        half = d.dev_size // 2
        sizes = [("train", d.train_size), ("dev_mine", half), ("dev_stop", d.dev_size - half),
                 ("test", d.test_size)]
        if len(keys) < sum(n for _, n in sizes):
            raise DataError(f"{path}: {len(keys)} groups, but the splits need {sum(n for _, n in sizes)} "
                            "(data.*_size count groups)")
        out, start = {}, 0
        for name, n in sizes:
            out[name] = [ex for k in keys[start:start + n] for ex in groups[k]]
            start += n
        out["pool"] = []
        return out

    def examples(self, problem: Problem, split: list[Problem], rng: random.Random) -> list[Example]:
        """Up to `2 x variants_per_label` failing one-line mutants, the faulty line as the label."""
        bad = [v for v in problem.variants if not v["passed"] and v["kind"].startswith("mutant")
               and len(v["lines"]) == 1 and v["lines"][0] <= self.cfg.max_lines]
        picked = rng.sample(bad, min(2 * self.full.data.variants_per_label, len(bad)))
        return [Example(v["code"], str(v["lines"][0]), group=problem.task_id) for v in picked]

    def fault(self, ex: Example) -> dict:
        """How an example's fault reads in a prompt: its problem, line number and faulty line, and the
        reference's line it replaced (empty where the example differs from its reference elsewhere too,
        as a mutant with renamed locals does)."""
        lines, n = ex.text.split("\n"), int(ex.label)
        problem = self.problems.get(ex.group)
        original = ""
        if problem is not None and changed_lines(problem.reference, ex.text) == [n]:
            original = problem.reference.split("\n")[n - 1].strip()
        return {"problem": ex.group, "entry_point": problem.entry_point if problem else "", "line": n,
                "original": original, "faulty": lines[n - 1].strip() if 0 < n <= len(lines) else ""}

    def request_vars(self, kind: str, variables: dict) -> tuple[dict, dict]:
        """The problem's reference with numbered lines, and the faults to show: the mislocalized one
        (self-revision) or the neighbourhood's (targeted)."""
        extra, meta = super().request_vars(kind, variables)
        extra["numbered"] = numbered(extra["reference"]) if extra["reference"] else ""
        shown = [variables["example"]] if kind == "self_revise" else variables.get("exemplars") or []
        extra["faults"] = [self.fault(ex) for ex in shown if ex is not None and ex.label]
        others = [f["problem"] for f in extra["faults"]
                  if f["original"] and f["problem"] != meta.get("problem")]
        if others and meta:
            meta["shown"] = list(dict.fromkeys(others))  # their lines are in the prompt too
        return extra, meta

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        item = {"type": "object", "properties": {"line": {"type": "integer"}, "original": {"type": "string"},
                                                  "faulty": {"type": "string"}},
                "required": ["line", "original", "faulty"], "additionalProperties": False}
        return {"type": "object", "properties": {"samples": {"type": "array", "items": item,
                                                            "minItems": 1, "maxItems": n}},
                "required": ["samples"], "additionalProperties": False}

    def read_item(self, item) -> tuple[str, dict] | None:
        """An edit: the stated line number, the original line and the faulty line that replaces it. The
        candidate's text is the edit until `verify` applies it to the reference."""
        if not isinstance(item, dict):
            return None
        line, original, faulty = item.get("line"), item.get("original"), item.get("faulty")
        if not (isinstance(line, int) and not isinstance(line, bool) and isinstance(original, str)
                and isinstance(faulty, str)):
            return None
        return (f"line {line}: {original.strip()} -> {faulty.strip()}",
                {"stated_line": line, "original": original, "faulty": faulty})

    def _target(self, cand: Candidate) -> tuple[Problem | None, int]:
        """The problem and line an edit names: the request's problem, or another whose fault line the prompt
        showed (the teacher may write a new fault on that line); (None, 0) for an unknown problem, line 0
        where the original text is not found."""
        problem = self.problems.get(cand.meta.get("problem", ""))
        if problem is None:
            return None, 0
        stated, original = cand.meta.get("stated_line") or 0, str(cand.meta.get("original", ""))
        for p in [problem] + [self.problems[k] for k in cand.meta.get("shown", []) if k in self.problems]:
            line = locate(p.reference, stated, original)
            if line:
                if p is not problem:
                    cand.meta["problem"] = p.task_id
                return p, line
        return problem, 0

    def verify(self, cands: list[Candidate]) -> None:
        """Apply each edit to the reference: the original text must be on the stated line (or on exactly
        one line, when the number is off), the faulty text must be one line that parses and changes the
        code; then the tests must fail (one sandbox batch). The label is the line the diff shows."""
        todo = []
        for cand in cands:
            if cand.verdict != "pending":
                continue
            problem, line = self._target(cand)
            faulty = str(cand.meta.get("faulty", "")).strip()
            reason, code, changed = "", None, []
            if problem is None:
                reason = "format"
            elif not line:
                reason = "line_mismatch"  # the original line is not where the teacher said, nor anywhere once
            elif "\n" in faulty:
                reason = "not_one_line"
            elif (code := normalize(edited(problem.reference, line, faulty))) is None:
                reason = "syntax"
            else:
                cand.text = code
                changed = changed_lines(problem.reference, code)
                if not changed:
                    reason = "unchanged"  # the same line again, perhaps reformatted or with a comment
                elif changed != [line]:
                    reason = "not_one_line"  # e.g. two statements on one line, which become two
                elif line > self.cfg.max_lines or not self.cfg.min_chars <= len(code) <= self.cfg.max_chars:
                    reason = "length"
            if reason:
                cand.verdict, cand.reason = "rejected", reason
            else:
                todo.append((cand, code, problem, line))
        outcomes = run_many([(code, p.test, p.entry_point, support(p)) for _, code, p, _ in todo],
                            self.limits)
        for (cand, _code, _problem, line), outcome in zip(todo, outcomes):
            cand.meta.update(outcome.record())
            cand.label = str(line)
            if outcome.passed:
                cand.verdict, cand.reason = "rejected", "passes_tests"  # not a bug

    def artifacts(self, preds: dict, splits: dict, mined) -> dict[str, list[dict]]:
        """Per-round table: the mislocalized functions the round mined (faulty line not ranked first by
        the previous student), each with its neighbourhood, the line ranked first and the rank of the
        fault."""
        hood_of = {c.example.id: h.id for h in mined.hoods for c in h.cases}
        rows = []
        for case in mined.hard:
            ex, row = case.example, mined.probs.get(case.example.id)
            if not case.wrong or row is None:
                continue
            lines = ex.text.split("\n") + [""] * len(row)  # padded: a line number past the end reads empty
            top = int(np.argmax(row))
            rows.append({"problem": ex.group, "neighbourhood": hood_of.get(ex.id),
                         "fault_line": int(ex.label), "fault_text": lines[int(ex.label) - 1].strip(),
                         "rank": ranks(row[None], self.labels, [ex.label])[0],
                         "predicted_line": top + 1, "predicted_text": lines[top].strip(),
                         "top_probability": round(float(row[top]), 4), "code": ex.text})
        return {"error_analysis/mislocalized.json": rows}

    def metric(self, pred, examples: list[Example]) -> dict[str, float]:
        r = ranks(pred.probs, self.labels, [e.label for e in examples])
        if not r:
            return {"top1": 0.0, "top3": 0.0, "top5": 0.0, "mean_first_rank": 0.0}
        return {"top1": float(np.mean([x <= 1 for x in r])), "top3": float(np.mean([x <= 3 for x in r])),
                "top5": float(np.mean([x <= 5 for x in r])), "mean_first_rank": float(np.mean(r))}
