"""`loop bench seed`: pass@1 on held-out problems for the base student, plain LoRA fine-tuning
on the training problems' references, and the loop with self-revision, at equal training steps.

Every fit runs `student.steps` optimizer steps from the pretrained weights, so the three
arms differ only in what the student is trained on: nothing (base), the references
(fine-tuning: the loop's round 0, which trains on exactly that), or the references plus
the accepted revised programs and new problems (the loop's later rounds). The problem
split is fixed; a seed moves the student's initialisation, data order and sampling, the
teacher's sampling and the planner. Runs are written as they finish and reused by a
rerun with the same settings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
from pathlib import Path

from loop.bench.efficiency import run_one, settings_key
from loop.config import Config

log = logging.getLogger(__name__)


def seeded(cfg: Config, seed: int, rounds: int) -> Config:
    return dataclasses.replace(
        cfg,
        student=dataclasses.replace(cfg.student, seed=cfg.student.seed + seed),
        teacher=dataclasses.replace(cfg.teacher, seed=cfg.teacher.seed + seed, cache=False),
        generation=dataclasses.replace(cfg.generation, strategy="targeted", seed=cfg.generation.seed + seed),
        loop=dataclasses.replace(cfg.loop, rounds=rounds, patience=rounds + 1),
        run=dataclasses.replace(cfg.run, name=None),
    )


def base_pass(cfg: Config) -> float:
    """Test pass@1 of the pretrained student, untrained (greedy: the same for every seed)."""
    from loop.components import build_student, build_task

    task = build_task(cfg)
    test = task.load_splits()["test"]
    return task.metric(task.predict(build_student(cfg), test), test)["pass_at_1"]


def _stats(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def summarise(result: dict) -> dict:
    runs = result["runs"]
    finetune = [r["rounds"][0]["test"] for r in runs]
    # the loop's student is the round it selects on the stopping split (round 0 included)
    selected = [max(r["rounds"], key=lambda x: (x["stop"], -x["round"]))["test"] for r in runs]
    last = [r["rounds"][-1]["test"] for r in runs]
    out = {"base": result.get("base"), "finetune": _stats(finetune), "loop_selected": _stats(selected),
           "loop_last": _stats(last),
           "accepted": _stats([float(r["rounds"][-1]["accepted"]) for r in runs]),
           "tokens": _stats([float(r["rounds"][-1]["tokens"]) for r in runs])}
    ft = out["finetune"]["mean"]
    out["relative_gain_selected"] = (out["loop_selected"]["mean"] / ft - 1) if ft else None
    out["relative_gain_last"] = (out["loop_last"]["mean"] / ft - 1) if ft else None
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["summary"]
    names = ["base", "LoRA fine-tune", "loop (selected)", "loop (last round)"]
    means = [s["base"] or 0.0, s["finetune"]["mean"], s["loop_selected"]["mean"], s["loop_last"]["mean"]]
    stds = [0.0, s["finetune"]["std"], s["loop_selected"]["std"], s["loop_last"]["std"]]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax.bar(names, means, yerr=stds, capsize=4, color=["tab:gray", "tab:blue", "tab:red", "tab:orange"])
    ax.set_ylabel("held-out pass@1")
    ax.set_title(f"pass@1, mean ± std over {len(result['runs'])} seeds")
    ax.tick_params(axis="x", labelrotation=15)
    for run in result["runs"]:
        ax2.plot([r["round"] for r in run["rounds"]], [r["test"] for r in run["rounds"]], marker="o",
                 label=f"seed {run['seed']}")
    ax2.set_xlabel("round (0 = fine-tuned on references)")
    ax2.set_ylabel("held-out pass@1")
    ax2.set_title("the loop, per round")
    ax2.legend()
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(cfg: Config, seeds: list[int], rounds: int, out: Path, work_dir: Path) -> dict:
    from loop.components import build_teacher
    from loop.embedder import SentenceEmbedder

    key = settings_key(cfg, [], rounds)
    result = {"task": cfg.task.name, "rounds": rounds, "steps_per_fit": cfg.student.steps, "settings": key,
              "base": None, "runs": []}
    if out.is_file():
        old = json.loads(out.read_text())
        if old.get("settings") == key:
            result.update(base=old.get("base"), runs=old["runs"])
    if result["base"] is None:
        log.info("bench seed: the base student on the held-out problems")
        result["base"] = base_pass(cfg)
    done = {r["seed"] for r in result["runs"]}
    todo = [s for s in seeds if s not in done]
    teacher = build_teacher(cfg) if todo else None
    embedder = SentenceEmbedder(cfg.filters.embedder)
    try:
        for seed in todo:
            log.info("bench seed: seed %d (%d of %d to do)", seed, todo.index(seed) + 1, len(todo))
            row = run_one(seeded(cfg, seed, rounds), teacher, embedder, work_dir, f"bench-{key}-seed-s{seed}")
            result["runs"].append({"seed": seed, **row})
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=1))
    finally:
        if teacher is not None:
            teacher.unload()
    result["summary"] = summarise(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    return result
