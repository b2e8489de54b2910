"""The efficiency benchmark's bookkeeping: budget checkpoints, means, and the token ratios."""

import pytest

from loop.bench.efficiency import seeded
from loop.bench.paired import at_budget, summary
from loop.config import load_config


def curve(points):
    return [{"round": i, "tokens": t, "test": m, "stop": m, "accepted": 0} for i, (t, m) in enumerate(points)]


def runs():
    out = []
    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        out.append({"strategy": "none", "seed": seed, "rounds": curve([(0, 0.50 + noise)])})
        out.append({"strategy": "random", "seed": seed,
                    "rounds": curve([(0, 0.50 + noise), (900, 0.52 + noise), (1900, 0.54 + noise),
                                     (2900, 0.56 + noise)])})
        out.append({"strategy": "targeted", "seed": seed,
                    "rounds": curve([(0, 0.50 + noise), (950, 0.56 + noise), (1950, 0.58 + noise),
                                     (2950, 0.60 + noise)])})
    return out


def test_at_budget_takes_the_last_round_that_fits():
    c = curve([(0, 0.5), (900, 0.6), (1900, 0.55)])
    assert at_budget(c, 1000)["test"] == 0.6 and at_budget(c, 1899)["round"] == 1
    assert at_budget(c, 5000)["test"] == 0.55 and at_budget(c, 5000)["selected_test"] == 0.6


def test_summary_ratios():
    s = summary({"budgets": [1000, 2000, 3000], "runs": runs()})
    t = s["table"]
    assert abs(t["targeted"]["3000"]["mean"] - 0.60) < 1e-9 and abs(t["random"]["1000"]["mean"] - 0.52) < 1e-9
    assert t["random"]["1000"]["std"] > 0 and t["none"]["1000"]["seeds"] == 3
    # targeted leads random by 0.04 on every seed at every budget: a paired interval of exactly that
    lead = s["paired"]["targeted-random"]["3000"]
    assert abs(lead["mean"] - 0.04) < 1e-9 and abs(lead["low"] - 0.04) < 1e-9 and lead["seeds"] == 3
    assert s["verdicts"]["targeted_above_random_at_max"]
    assert not s["token_ratio"]["reached"]  # random never reaches 0.60 within 3000 tokens: a lower bound


def test_seeded_runs_differ_only_in_selection_and_seed():
    cfg = load_config(None)
    a, b = seeded(cfg, "targeted", 1, 9000, 3), seeded(cfg, "random", 1, 9000, 3)
    assert a.generation.strategy == "targeted" and b.generation.strategy == "random"
    assert a.data.seed == b.data.seed == cfg.data.seed + 1 and a.teacher.seed == b.teacher.seed
    assert a.budget.tokens == 9000 and a.loop.rounds == 3 and a.loop.patience > 3
    assert not a.teacher.cache  # tokens on the curve are always paid tokens
    assert seeded(cfg, "none", 0, 9000, 3).loop.rounds == 0


def test_results_are_reused_only_under_the_same_settings(tmp_path):
    import shutil

    from conftest import ROOT

    from loop.bench.efficiency import settings_key

    folder = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts" / "classify", folder)
    cfg = load_config(None, {"task.prompts": str(folder)})
    key = settings_key(cfg, [1000, 2000], 2)
    assert key == settings_key(cfg, [1000, 2000], 2) != settings_key(cfg, [1000, 3000], 2)
    (folder / "targeted.j2").write_text((folder / "targeted.j2").read_text() + " Be terse.")
    assert settings_key(cfg, [1000, 2000], 2) != key  # an edited prompt invalidates old results


def test_a_seeds_round_0_student_is_trained_once_and_reused():
    """Another strategy's round 0 (same student config, same seed data) loads the trained weights, and
    predicts exactly what the trained student predicts; fits with generated samples always train."""
    import dataclasses

    import numpy as np

    from loop.bench.efficiency import FitCache
    from loop.components import build_student
    from loop.records import Example

    cfg = load_config(None, {"student.epochs": 1, "student.max_length": 32})
    gold = [Example(f"sample text number {i} {'great' if i % 2 else 'awful'}",
                    "positive" if i % 2 else "negative")
            for i in range(12)]
    fits, calls = FitCache(), []

    def student():
        s = build_student(cfg)
        inner = s.fit
        s.fit = lambda ex: (calls.append(len(ex)), inner(ex))
        return fits.wrap(s, cfg)

    first = student()
    first.fit(gold)
    second = student()
    second.fit(gold)
    assert calls == [12] and fits.hits == 1
    assert np.array_equal(first.predict(gold).probs, second.predict(gold).probs)
    assert first.state_digest() == second.state_digest()
    generated = gold + [dataclasses.replace(gold[0], text="a generated one", source="generated")]
    second.fit(generated)
    assert calls == [12, 13]  # never cached: only seed-data fits are shared
    assert first.state_digest() != second.state_digest()
    first.fit(gold)
    assert calls == [12, 13] and fits.hits == 2


def test_partial_results_are_saved_with_their_table_and_plot(tmp_path):
    """After every run the JSON carries the summary of the runs so far and the plot is redrawn, so an
    interrupted benchmark still has its figures."""
    import json

    from loop.bench.efficiency import _save

    out = tmp_path / "efficiency-x.json"
    partial = [r for r in runs() if r["seed"] == 0 and r["strategy"] != "targeted"]
    _save({"task": "x", "metric": "macro_f1", "budgets": [1000, 2000], "rounds": 3, "settings": "k",
           "runs": partial}, out)
    saved = json.loads(out.read_text())
    assert set(saved["summary"]["table"]) == {"none", "random"} \
        and saved["summary"]["table"]["random"]["1000"]["seeds"] == 1
    assert saved["summary"]["token_ratio"] == {} and "targeted-random" not in saved["summary"]["paired"]
    assert out.with_suffix(".png").stat().st_size > 1000


def test_an_interrupted_benchmark_run_resumes_instead_of_starting_over(tiny_config, tmp_path, monkeypatch):
    """A run killed in round 2 and started again goes on from its store: its curve (round 0 at zero tokens)
    and its spending are those of a run that was never interrupted."""
    from conftest import HashEmbedder, StableTeacher, TinyStudent

    import loop.components
    from loop.bench.efficiency import run_one

    monkeypatch.setattr(loop.components, "build_student", lambda cfg: TinyStudent())
    cfg = tiny_config(**{"loop.rounds": 3, "teacher.cache": False})
    clean = run_one(cfg, StableTeacher(), HashEmbedder(), tmp_path / "clean", "r")

    class Killed(BaseException):
        pass

    dying = StableTeacher()
    real, calls = dying.generate, []

    def generate(requests):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real(requests)

    dying.generate = generate
    try:
        run_one(cfg, dying, HashEmbedder(), tmp_path / "cut", "r")
    except Killed:
        pass
    resumed = run_one(cfg, StableTeacher(), HashEmbedder(), tmp_path / "cut", "r")
    assert [r["tokens"] for r in resumed["rounds"]] == [r["tokens"] for r in clean["rounds"]]
    assert resumed["rounds"][0]["tokens"] == 0 and len(resumed["rounds"]) == 4


def test_compare_pairs_a_variant_with_its_baseline_by_seed(tmp_path):
    """The variant gains 0.02 on every seed with half the tokens per sample: the interval is that gain, and
    the yield doubles."""
    import json

    from loop.bench.compare import compare, table_lines

    def result(gain, accepted):
        runs = [{"strategy": "targeted", "seed": s,
                 "rounds": [{"round": 0, "tokens": 0, "accepted": 0, "test": 0.5 + s / 100, "stop": 0.5},
                            {"round": 1, "tokens": 900, "accepted": accepted, "test": 0.55 + s / 100 + gain,
                             "stop": 0.55 + gain}]} for s in range(3)]
        return {"budgets": [500, 1000], "runs": runs + [{"strategy": "none", "seed": 0, "rounds": []}]}

    (tmp_path / "a.json").write_text(json.dumps(result(0.0, 10)))
    (tmp_path / "b.json").write_text(json.dumps(result(0.02, 20)))
    report = compare(tmp_path / "a.json", tmp_path / "b.json")
    at = report["budgets"]["1000"]
    assert at["test"]["mean"] == at["test"]["low"] == at["test"]["high"] == pytest.approx(0.02)
    assert at["baseline"]["accepted_per_1k_tokens"] == pytest.approx(10 / 0.9)
    assert at["variant"]["tokens_per_accepted"] == pytest.approx(45)
    assert report["budgets"]["500"]["test"]["mean"] == 0.0  # only round 0 fits 500 tokens: no difference
    assert report["seeds"] == [0, 1, 2] and "+0.0200" in table_lines(report)[-1]
