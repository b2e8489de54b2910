"""Fault localization: given a buggy function, rank its lines by how likely each holds the fault.

Examples are one-site mutants of HumanEval reference solutions (or any problems file of the
same shape) whose tests fail in the sandbox; the faulty line is known exactly from the
mutation (the one line that differs from the reference). The label is that line's number
(1-based, in the function as shown, docstring included), so a line is a class: the
student scores every line and the metrics are Top-1/3/5 and the mean first rank.

The teacher writes new buggy variants of a problem's reference, stating the line it
changed. A variant is completed from the reference (a left-out docstring, helper or import goes
back; a function written twice keeps its last definition) and accepted only if it parses, keeps
the entry point, differs from the reference on exactly one line (once variables it merely renamed
are named back), that line is the one it stated (by its number in the code the teacher wrote or in
the reference, or by a `# <- fault` comment on it; compared as code, so the teacher's formatting
does not matter), and the problem's tests fail. The label is the
computed line, never the stated one. Self-revision rewrites a mislocalized example into a
variant with a fault of the same kind on another line.

Any JSONL whose rows have `code` and `fault_lines` (1-based line numbers; the first is the
label; an optional `group` keeps related rows in one split) works as `data.source` too. Such
rows carry no tests, so generated variants of them cannot be checked and are rejected
('format'): with such data the loop's generation needs a problems file.
"""

from __future__ import annotations

import ast
import difflib
import io
import keyword
import random
import re
import tokenize
from collections import Counter

import numpy as np

from loop.config import Config
from loop.data import Candidate, Example, iter_jsonl
from loop.errors import DataError
from loop.humaneval import Problem
from loop.mutation import Renamer, changed_lines, normalize
from loop.sandbox import run_many
from loop.tasks.code import CodeTask, completed, defines


MARKER = re.compile(r"#\s*<-\s*fault")  # how the prompts mark a faulty line; the teacher may mark its own


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


def _same(a: str, b: str) -> bool:
    return _line_form(a) == _line_form(b)


def _states(raw: str, stated: int, rendered: str, changed: int) -> bool:
    """Whether the teacher stated the line that changed: by its number in the code the teacher wrote (a
    line with the changed text), by the changed line's number in the completed function (the numbering of
    the solution the teacher was shown, which a left-out docstring or helper shifts), or by marking the
    line with `# <- fault` as the prompts' examples do."""
    lines, text = raw.split("\n"), rendered.split("\n")[changed - 1]
    return (stated == changed or (0 < stated <= len(lines) and _same(lines[stated - 1], text))
            or any(MARKER.search(line) and _same(line, text) for line in lines))


def _names(code: str) -> list[str]:
    return [t.string for t in tokenize.generate_tokens(io.StringIO(code).readline)
            if t.type == tokenize.NAME and not keyword.iskeyword(t.string)]


def _named_as(code: str, reference: str) -> str:
    """`code` with the variables it renamed given the reference's names back (examples are shown with
    renamed locals, and the teacher may copy them). Only a true renaming is undone: a name the reference
    does not use, in the place of one the code does not use, so a wrong-variable fault stays a fault.
    Renaming keeps every line where it is."""
    mine, theirs = _names(code), _names(reference)
    votes: Counter = Counter()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=mine, b=theirs, autojunk=False).get_opcodes():
        if tag == "replace" and i2 - i1 == j2 - j1:
            votes.update(zip(mine[i1:i2], theirs[j1:j2]))
    mapping: dict[str, str] = {}
    for (new, old), _ in votes.most_common():
        if new not in theirs and old not in mine and new not in mapping and old not in mapping.values():
            mapping[new] = old
    return ast.unparse(Renamer(mapping).visit(ast.parse(code))) if mapping else code


def ranks(probs: np.ndarray, labels: list[str], gold: list[str]) -> list[int]:
    """1-based rank of the faulty line in each function's ranking."""
    out = []
    for row, g in zip(probs, gold):
        order = np.argsort(-row, kind="stable")
        out.append(int(np.flatnonzero(order == labels.index(g))[0]) + 1)
    return out


class FaultLocTask(CodeTask):
    name = "faultloc"
    confusion = False  # a line-number x line-number matrix says nothing; the mislocalized table does

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
                raise DataError(f"{path}:{lineno}: needs 'code' (text) and 'fault_lines' (a list of line numbers)")
            if not 1 <= lines[0] <= min(self.cfg.max_lines, len(row["code"].split("\n"))):
                raise DataError(f"{path}:{lineno}: fault line {lines[0]} is outside the function's first "
                                f"{self.cfg.max_lines} lines (task.max_lines)")
            group = str(row.get("group", f"row{lineno}"))
            groups.setdefault(group, []).append(Example(row["code"], str(lines[0]), group=group))
        keys = sorted(groups)
        random.Random(d.seed).shuffle(keys)
        half = d.dev_size // 2
        sizes = [("train", d.train_size), ("dev_mine", half), ("dev_stop", d.dev_size - half), ("test", d.test_size)]
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

    def request_vars(self, kind: str, variables: dict) -> tuple[dict, dict]:
        extra, meta = super().request_vars(kind, variables)
        if kind == "self_revise" and variables.get("example") is not None:
            ex = variables["example"]
            lines = ex.text.split("\n")
            line = int(ex.label)
            extra["fault_line"] = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return extra, meta

    def json_schema(self, n: int, kind: str = "targeted") -> dict:
        item = {"type": "object", "properties": {"code": {"type": "string"}, "line": {"type": "integer"}},
                "required": ["code", "line"], "additionalProperties": False}
        return {"type": "object", "properties": {"samples": {"type": "array", "items": item,
                                                            "minItems": 1, "maxItems": n}},
                "required": ["samples"], "additionalProperties": False}

    def read_item(self, item) -> dict | None:
        line = item.get("line") if isinstance(item, dict) else None
        if not (isinstance(item, dict) and isinstance(item.get("code"), str) and isinstance(line, int)
                and not isinstance(line, bool)):
            return None
        return {"stated_line": line}

    def verify(self, cands: list[Candidate]) -> None:
        """Parse, one changed line, the stated line, then the tests must fail (one sandbox batch)."""
        todo = []
        for cand in cands:
            if cand.verdict != "pending":
                continue
            problem = self.problems.get(cand.meta.get("problem", ""))
            code = normalize(cand.text)
            reason, rendered, changed = "", "", []
            if problem is None:
                reason = "format"
            elif code is None:
                reason = "syntax"
            elif not defines(code, problem.entry_point):
                reason = "format"
            else:
                rendered = completed(code, problem.reference, problem.entry_point)
                changed = changed_lines(problem.reference, _named_as(rendered, problem.reference))
                if not changed:
                    reason = "unchanged"  # a copy of the reference, perhaps with renamed variables
                elif len(changed) > 1:
                    reason = "not_one_line"  # changed in several places
                elif changed[0] > self.cfg.max_lines or not self.cfg.min_chars <= len(rendered) <= self.cfg.max_chars:
                    reason = "length"
                elif not _states(cand.text, cand.meta.get("stated_line") or 0, rendered, changed[0]):
                    reason = "line_mismatch"  # the stated line is not the one that changed
            if reason:
                cand.verdict, cand.reason = "rejected", reason
            else:
                todo.append((cand, rendered, problem, changed[0]))
        outcomes = run_many([(code, p.test, p.entry_point) for _, code, p, _ in todo], self.limits)
        for (cand, rendered, problem, line), outcome in zip(todo, outcomes):
            cand.meta["execution"] = outcome.status
            cand.text, cand.label = rendered, str(line)
            if outcome.passed:
                cand.verdict, cand.reason = "rejected", "passes_tests"  # not a bug

    def artifacts(self, preds: dict, splits: dict, mined) -> dict[str, list[dict]]:
        """Per-round table: the mislocalized functions the round mined (faulty line not ranked first by
        the previous student), each with its neighbourhood, the line ranked first and the rank of the fault."""
        hood_of = {c.example.id: h.id for h in mined.hoods for c in h.cases}
        rows = []
        for case in mined.hard:
            ex, row = case.example, mined.probs.get(case.example.id)
            if not case.wrong or row is None:
                continue
            lines = ex.text.split("\n") + [""] * len(row)  # padded: a line number past the end reads empty
            top = int(np.argmax(row))
            rows.append({"problem": ex.group, "neighbourhood": hood_of.get(ex.id), "fault_line": int(ex.label),
                         "fault_text": lines[int(ex.label) - 1].strip(),
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
