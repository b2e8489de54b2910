"""`loop bench reliability`: SIGKILL runs at random points, resume them, compare with an uninterrupted run.

A trial starts a run in a child process and kills it with SIGKILL at one point: while
waiting for the teacher, right after a response is stored, while parsing, while training,
while logging to MLflow, or after a random delay. It then resumes the run, each time in a
new process, until the run finishes. The outcome is compared with an uninterrupted run of
the same config: the accepted samples (as a multiset), the budget ledger, responses paid
twice, the budget caps and the MLflow parent runs. The teacher answers from a cassette
(recorded once, or given), so every process sees the same replies.

Children are forked from a zygote: one fresh interpreter that imported everything once and
runs no model code itself (so no thread pool is inherited across fork); a launch costs
milliseconds instead of an interpreter start. Parts are built by a factory
`module:function(cfg, run_dir) -> Parts`; the default is `loop.components:assemble`, the
parts `loop run` uses.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from loop.bench.outcomes import POINTS, Outcome, compare, read_outcome, summarise

log = logging.getLogger(__name__)



MLFLOW_CALLS = ("log_metrics", "log_metric", "log_params", "set_tag", "set_tags", "log_artifact", "log_table")
# imported once in the zygote, so that a child starts with them (importing is most of a small run's time)
PRELOAD = ("loop.controller", "loop.components", "loop.cli", "loop.teachers.replay", "loop.embedder", "faiss",
           "mlflow", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.db.utils", "alembic.command",
           "sqlalchemy", "pandas", "matplotlib.pyplot", "loop.students.encoder", "transformers", "torch")


# --- in the child -------------------------------------------------------------------------------------------

def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Hooks:
    """Counts calls at every kill point (and training durations); kills the process at one of them."""

    def __init__(self, point: str | None = None, at: int = 0, delay: float = 0.0):
        self.point, self.at, self.delay = point, at, delay
        self.counts = collections.Counter()
        self.train_seconds: list[float] = []

    def _hit(self, point: str) -> bool:
        self.counts[point] += 1
        return point == self.point and self.counts[point] == self.at

    def _wrap(self, owner, name: str, point: str, after: bool = False):
        real = getattr(owner, name)

        def wrapped(*args, **kwargs):
            if after:
                out = real(*args, **kwargs)
                if self._hit(point):
                    _die()
                return out
            if self._hit(point):
                _die()
            return real(*args, **kwargs)

        setattr(owner, name, wrapped)

    def _wrap_fit(self, student) -> None:
        real = student.fit

        def fit(*args, **kwargs):
            armed = self._hit("train")
            if armed:  # die part-way through this fit (or, if it is quicker, as it returns)
                threading.Timer(self.delay, _die).start()
            start = time.perf_counter()
            out = real(*args, **kwargs)
            self.train_seconds.append(time.perf_counter() - start)
            if armed:
                _die()
            return out

        student.fit = fit

    def install(self, parts) -> None:
        import mlflow

        self._wrap(parts.teacher, "generate", "teacher")
        self._wrap(parts.store, "add_response", "stored", after=True)
        self._wrap(parts.task, "parse", "parse")
        self._wrap_fit(parts.student)
        for name in MLFLOW_CALLS:
            self._wrap(mlflow, name, "mlflow")
        self._wrap(mlflow.tracking.MlflowClient, "log_metric", "mlflow")


def _factory(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _known(run_dir: Path) -> bool:
    path = run_dir.parent / "store.sqlite"
    if not path.is_file():
        return False
    from loop.store import RunStore

    store = RunStore(path)
    try:
        return store.run_info(run_dir.name) is not None
    finally:
        store.close()


def child(spec: dict) -> None:
    """One launch: start or resume the run, with a kill point armed; write the hook counts when done."""
    from loop.config import load_config
    from loop.controller import run_loop
    from loop.runs import run_lock

    cfg = load_config(spec["config"], spec["overrides"])
    run_dir = Path(spec["run_dir"])
    hooks = Hooks(spec.get("point"), spec.get("at", 0), spec.get("delay", 0.0))
    with run_lock(run_dir):
        resume = _known(run_dir)  # as `loop run --resume RUN` once the run is in the store
        parts = _factory(spec["factory"])(cfg, run_dir)
        hooks.install(parts)
        try:
            run_loop(cfg, parts, run_dir.name, run_dir, resume=resume)
        finally:
            parts.teacher.unload()
            parts.store.close()
    Path(spec["run_dir"], "hooks.json").write_text(json.dumps({"counts": hooks.counts,
                                                               "train_seconds": hooks.train_seconds}))


def zygote() -> None:
    """Read launch specs (JSON lines) on stdin; fork a child for each; answer how it ended."""
    import matplotlib

    matplotlib.use("Agg")
    for name in PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    for line in sys.stdin:
        spec = json.loads(line)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 0
            Path(spec["run_dir"]).parent.mkdir(parents=True, exist_ok=True)
            with open(Path(spec["run_dir"]).parent / "children.log", "a") as logf:
                os.dup2(logf.fileno(), 1)
                os.dup2(logf.fileno(), 2)
                logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                                    format=f"%(asctime)s [{os.getpid()}] %(levelname)s %(name)s: %(message)s")
                try:
                    child(spec)
                except BaseException:  # noqa: BLE001 -- reported to the parent as a failed launch
                    traceback.print_exc()
                    code = 3
                sys.stderr.flush()
            os._exit(code)
        status = _wait(pid, spec.get("kill_after"))
        seconds = time.perf_counter() - start
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -1
        log.debug("launch %s: %.2fs", spec["run_dir"], seconds)
        out.write(json.dumps({"end": "killed" if killed else "ok" if code == 0 else "failed",
                              "code": code, "seconds": seconds}) + "\n")
        out.flush()


def _wait(pid: int, kill_after: float | None) -> int:
    deadline = None if kill_after is None else time.monotonic() + kill_after
    while True:
        done, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitpid(pid, 0)[1]
        time.sleep(0.01)


# --- in the parent ------------------------------------------------------------------------------------------

class Zygote:
    def __init__(self, env: dict | None = None):
        cmd = [sys.executable, "-c", "from loop.bench.reliability import zygote; zygote()"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})

    def launch(self, spec: dict) -> dict:
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the zygote died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclasses.dataclass
class Harness:
    """Where and how the runs of one benchmark live."""

    config: str | None
    overrides: dict
    root: Path
    factory: str = "loop.components:assemble"
    max_launches: int = 6

    def __post_init__(self):
        self.root.mkdir(parents=True, exist_ok=True)
        self.tracking = f"sqlite:///{self.root / 'mlflow.db'}"

    def spec(self, name: str, **extra) -> dict:
        overrides = {**self.overrides, "run.dir": str(self.root / name), "tracking.uri": self.tracking,
                     "tracking.experiment": "reliability"}
        return {"config": self.config, "overrides": overrides, "factory": self.factory,
                "run_dir": str(self.root / name / name), **extra}

    def outcome(self, name: str) -> Outcome:
        return read_outcome(self.root / name / name, self.tracking, "reliability")


def run_trial(zyg: Zygote, h: Harness, name: str, point: str, rng: random.Random, clean: dict) -> dict:
    """Kill a fresh run once at `point`, then resume it until it finishes; `random` kills again at random."""
    counts, ends = clean["counts"], []
    at = rng.randint(1, max(1, counts.get(point, 1)))
    delay = rng.uniform(0.0, max(clean["train_seconds"] or [0.0]))
    spec = h.spec(name, point=point if point != "random" else None, at=at, delay=delay)
    if point == "random":
        spec["kill_after"] = rng.uniform(0.0, clean["seconds"])
    for _ in range(h.max_launches):
        res = zyg.launch(spec)
        ends.append(res["end"])
        if res["end"] != "killed" or h.outcome(name).status == "done":
            break
        spec = h.spec(name)  # resume: a new process, no kill point
        if point == "random" and rng.random() < 0.5:  # sometimes die again, later
            spec["kill_after"] = rng.uniform(0.0, clean["seconds"])
    return {"name": name, "point": point, "at": at, "ends": ends}


def _uninterrupted(zyg: Zygote, config: str | None, overrides: dict, root: Path, factory: str,
                   cassette: str | None) -> tuple[Harness, dict, dict, Outcome]:
    """Record the cassette (unless given), then run once, uninterrupted, answering from it: the harness of the
    trials, the budget caps, the clean run's hooks and its outcome."""
    from loop.config import load_config

    cassette_path = Path(cassette) if cassette else root / "cassette.jsonl"
    if cassette is None:
        cassette_path.unlink(missing_ok=True)
        rec = Harness(config, {**overrides, "teacher.record": str(cassette_path)}, root, factory)
        if zyg.launch(rec.spec("record"))["end"] != "ok":
            raise RuntimeError(f"recording the cassette failed: see {root / 'record' / 'children.log'}")
    replay = {**overrides, "teacher.backend": "replay", "teacher.cassette": str(cassette_path)}
    h = Harness(config, replay, root, factory)
    cfg = load_config(config, h.spec("clean")["overrides"])
    caps = {"tokens": cfg.budget.tokens, "samples": cfg.budget.samples}
    res = zyg.launch(h.spec("clean"))
    if res["end"] != "ok":
        raise RuntimeError(f"the uninterrupted run failed: see {root / 'clean' / 'children.log'}")
    clean = {**json.loads((root / "clean" / "clean" / "hooks.json").read_text()), "seconds": res["seconds"]}
    return h, caps, clean, h.outcome("clean")


def run(config: str | None, overrides: dict, root: Path, trials: int, seed: int = 0,
        factory: str = "loop.components:assemble", cassette: str | None = None, env: dict | None = None,
        workers: int = 1) -> dict:
    """Record (unless given a cassette), run once uninterrupted, then `trials` kill-and-resume trials
    (`workers` at a time, each trial with its own seeded choices, so the result does not depend on it)."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    root = Path(root)
    zygotes = [Zygote(env) for _ in range(max(1, workers))]
    try:
        h, caps, clean, reference = _uninterrupted(zygotes[0], config, overrides, root, factory, cassette)
        free: queue.Queue = queue.Queue()
        for z in zygotes:
            free.put(z)

        def one(i: int) -> dict:
            zyg, point = free.get(), POINTS[i % len(POINTS)]
            try:
                trial = run_trial(zyg, h, f"t{i:02d}", point, random.Random(seed * 100003 + i), clean)
            finally:
                free.put(zyg)
            trial.update(compare(h.outcome(trial["name"]), reference, caps))
            log.info("trial %s (%s #%d): launches %s -> finished %s, paid twice %d, lost %d, duplicated %d",
                     trial["name"], point, trial["at"], "/".join(trial["ends"]), trial["finished"],
                     trial["paid_twice"], trial["lost"], trial["duplicated"])
            return trial

        with ThreadPoolExecutor(len(zygotes)) as pool:
            rows = list(pool.map(one, range(trials)))
    finally:
        for z in zygotes:
            z.close()
    return {"clean": {"seconds": clean["seconds"], "counts": clean["counts"],
                      "accepted": len(reference.accepted), "spent_tokens": reference.spent[0],
                      "responses": reference.responses, "caps": caps},
            "trials": rows, "summary": summarise(rows)}


# the benchmark's run: the default task, shrunk so that ~50 launches fit in minutes, with a binding cap
BENCH_OVERRIDES = {"data.train_size": 60, "data.dev_size": 200, "data.test_size": 300, "student.epochs": 3,
                   "loop.rounds": 2, "loop.patience": 5, "budget.tokens": 9000,
                   "generation.targeted_requests": 6, "generation.revise_requests": 4}


def run_bench(config: str | None, overrides: dict, trials: int, seed: int, workers: int, cassette: str | None,
              out: Path, work_dir: Path, main) -> dict:
    """The kill trials, then the bad-input corpus run through `main` (the `loop` command group)."""
    from loop.bench.hostile import run_corpus
    from loop.bench.programs import run_backends
    from loop.config import load_config

    settings = {**BENCH_OVERRIDES, **overrides}
    started = time.perf_counter()
    result = {}
    if trials:  # --trials 0: the corpora only
        result = run(config, settings, work_dir, trials, seed, cassette=cassette, workers=workers,
                     env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // max(1, workers)))})
    result["seconds"] = time.perf_counter() - started
    corpus = run_corpus(load_config(config, settings), main)
    result["bad_inputs"] = corpus
    result["hostile_programs"] = run_backends()
    result["settings"] = {"config": config or "<defaults>", "overrides": settings, "trials": trials,
                          "seed": seed, "workers": workers}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


