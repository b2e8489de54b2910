"""The whole loop on fakes (scripted teacher, tiny student, hashing embedder) with a real MLflow store."""

import json

import pytest
from conftest import HashEmbedder, ScriptedTeacher, TinyStudent

from loop.controller import run_loop
from loop.data import load_splits
from loop.parts import Parts
from loop.records import GenResult
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.tracking import Tracker


def run(cfg, tmp_path, teacher=None, name="t"):
    run_dir = tmp_path / "runs" / name
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run(name, cfg.to_dict())
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    parts = Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=teacher or ScriptedTeacher(),
                  embedder=HashEmbedder(), splits=load_splits(cfg), store=store, tracker=tracker)
    return run_loop(cfg, parts, name, run_dir), parts


def child_runs(tracker):
    import mlflow
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name("loop")
    runs = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_id}'")
    return sorted(runs, key=lambda r: int(r.data.tags["round"]))


@pytest.fixture
def targeted(tiny_config, tmp_path):
    """A two-round targeted run on the fakes: (config, summary, parts, MLflow child runs)."""
    cfg = tiny_config()
    summary, parts = run(cfg, tmp_path)
    return cfg, summary, parts, child_runs(parts.tracker)


def test_targeted_prompts_point_at_mined_neighbourhoods(targeted):
    _, summary, parts, _ = targeted
    calls = parts.teacher.calls
    assert summary["rounds_run"] == 2 and summary["stop_reason"] == "rounds"
    assert len(calls) == 2  # one batch per round
    assert {r.kind for r in calls[0]} == {"targeted", "self_revise"}
    assert all(r.meta["neighbourhood"] >= 0 for r in calls[0])


def test_each_round_retrains_on_the_seed_and_everything_accepted(targeted):
    cfg, summary, parts, _ = targeted
    assert parts.store.count("responses", "t") == sum(len(c) for c in parts.teacher.calls)
    accepted = parts.store.accepted("t")
    assert summary["accepted_total"] == len(accepted) > 0 and summary["tokens_spent"] <= cfg.budget.tokens
    fits = parts.student.fits
    assert fits[0] == 60 and fits[0] < fits[1] < fits[2] == 60 + len(accepted)


def test_each_round_is_an_mlflow_child_run_with_its_figures(targeted):
    _, _, parts, runs = targeted
    assert [r.data.tags["round"] for r in runs] == ["0", "1", "2"]
    m1 = runs[1].data.metrics
    assert m1["requests"] == len(parts.teacher.calls[0]) and m1["accepted"] > 0
    assert {"stop_macro_f1", "test_accuracy", "errors", "low_confidence", "prompt_tokens",
            "completion_tokens", "candidates", "seconds/seconds_generate", "seconds/seconds_train"} <= set(m1)
    # per-class scores under their own group; each round shows its key parameters
    assert {f"per_class/test_f1_{lab}" for lab in ("negative", "neutral", "positive")} <= set(m1)
    params = runs[1].data.params
    assert params["round"] == "1" and params["generation.strategy"] == "targeted" and "prompts" in params
    parent = parts.tracker.mlflow.tracking.MlflowClient().get_metric_history(parts.tracker.parent_id,
                                                                             "by_tokens/test_macro_f1")
    assert [p.step for p in parent] == [int(r.data.metrics["tokens_spent_total"]) for r in runs]
    # what an accepted sample cost, and the share of candidates that copied what the student has
    assert m1["tokens_per_accepted"] == pytest.approx(m1["tokens_round"] / m1["accepted"])
    copies = m1.get("rejected/rejected_duplicate", 0) + m1.get("rejected/rejected_near_duplicate", 0)
    assert m1["duplicate_share"] == pytest.approx(copies / m1["candidates"])


def test_each_round_logs_its_error_analysis_and_the_next_one_follows_it_up(targeted):
    import mlflow

    runs, client = targeted[3], mlflow.tracking.MlflowClient()
    arts = {a.path for a in client.list_artifacts(runs[1].info.run_id)}
    assert {"error_analysis", "samples", "confusion_stop.png", "per_class_test.json"} <= arts
    ea1 = {a.path for a in client.list_artifacts(runs[1].info.run_id, "error_analysis")}
    ea2 = {a.path for a in client.list_artifacts(runs[2].info.run_id, "error_analysis")}
    assert {"error_analysis/neighbourhoods.json", "error_analysis/map.png"} <= ea1
    assert "error_analysis/followup.json" in ea2 and "error_analysis/followup.json" not in ea1
    assert "followup_errors_fixed" in runs[2].data.metrics
    table = client.download_artifacts(runs[1].info.run_id, "error_analysis/neighbourhoods.json")
    rows = json.load(open(table))
    requests = [r[rows["columns"].index("requests")] for r in rows["data"]]
    assert sum(requests) > 0  # what the plan asked of each neighbourhood reaches its table


def test_replies_cut_off_at_max_tokens_are_counted_and_warned_about(tiny_config, tmp_path, caplog):
    teacher = ScriptedTeacher()
    teacher.finish = "length"
    with caplog.at_level("WARNING", logger="loop.controller"):
        _, parts = run(tiny_config(), tmp_path, teacher)
    m1 = child_runs(parts.tracker)[1].data.metrics
    assert m1["truncated_replies"] == m1["requests"] == len(teacher.calls[0]) > 0
    cut = [r.getMessage() for r in caplog.records if "cut off at teacher.max_tokens" in r.getMessage()]
    sent = len(teacher.calls[0])
    assert len(cut) == 2 and cut[0].startswith(f"round 1: {sent} of {sent} ")


def test_replies_that_end_normally_report_no_cut(targeted):
    assert targeted[3][1].data.metrics["truncated_replies"] == 0


def test_budget_cap_is_never_crossed(tiny_config, tmp_path):
    cfg = tiny_config(**{"budget.tokens": 1500, "loop.rounds": 8, "teacher.max_tokens": 400})
    summary, parts = run(cfg, tmp_path)
    assert summary["tokens_spent"] <= 1500
    assert summary["stop_reason"] == "budget"
    m = child_runs(parts.tracker)[1].data.metrics
    assert m["requests_skipped_budget"] > 0


def test_sample_cap(tiny_config, tmp_path):
    summary, parts = run(tiny_config(**{"budget.samples": 5}), tmp_path)
    assert summary["accepted_total"] == 5
    assert parts.store.spent("t").samples == 5


def test_bad_teacher_output_is_counted_not_fatal(tiny_config, tmp_path):
    teacher = ScriptedTeacher(["not json at all",
                               '{"samples": [{"text": "ok text here", "label": "angry"}]}'])
    summary, parts = run(tiny_config(**{"loop.rounds": 1}), tmp_path, teacher)
    m = child_runs(parts.tracker)[1].data.metrics
    assert m["rejected/rejected_parse"] == 1 and m["rejected/rejected_label"] == 1


def test_a_round_that_accepts_nothing_does_not_retrain(tiny_config, tmp_path):
    g = tiny_config().generation
    junk = ["not json at all"] * 2 * (g.targeted_requests + g.revise_requests)
    cfg = tiny_config(**{"loop.rounds": 2, "loop.patience": 5})
    summary, parts = run(cfg, tmp_path, ScriptedTeacher(junk))
    assert summary["accepted_total"] == 0 and summary["rounds_run"] == 2
    assert parts.student.fits == [60]  # the same data would give the same student
    runs = child_runs(parts.tracker)
    trained = "seconds/seconds_train"
    assert trained in runs[0].data.metrics and trained not in runs[1].data.metrics
    assert runs[1].data.metrics["test_macro_f1"] == runs[0].data.metrics["test_macro_f1"]


@pytest.mark.parametrize("strategy", ["random", "none"])
def test_baseline_strategies_share_the_loop(tiny_config, tmp_path, strategy):
    summary, parts = run(tiny_config(**{"generation.strategy": strategy}), tmp_path, name=strategy)
    calls = parts.teacher.calls
    if strategy == "none":
        assert calls == [] and summary["accepted_total"] == 0 and summary["tokens_spent"] == 0
    else:
        assert all(r.meta["neighbourhood"] == -1 for r in calls[0])
        g = tiny_config().generation
        assert len(calls[0]) == g.targeted_requests + g.revise_requests


def test_plateau_stops_early(tiny_config, tmp_path):
    cfg = tiny_config(**{"generation.strategy": "none", "loop.rounds": 6, "loop.patience": 2})
    summary, _ = run(cfg, tmp_path)
    assert summary["stop_reason"] == "plateau" and summary["rounds_run"] == 2


def test_repeating_a_run_is_free_from_the_response_cache(tiny_config, tmp_path):
    cfg = tiny_config()
    first, parts1 = run(cfg, tmp_path, name="first")
    again, parts2 = run(cfg, tmp_path, name="again")
    assert parts2.teacher.calls == []  # nothing sent
    assert again["tokens_spent"] == 0 and first["tokens_spent"] > 0
    assert again["accepted_total"] == first["accepted_total"]
    m = child_runs(parts2.tracker)[1].data.metrics
    assert m["cache_hits"] == m["requests"] > 0
    off, parts3 = run(tiny_config(**{"teacher.cache": False}), tmp_path, name="nocache")
    assert parts3.teacher.calls and off["tokens_spent"] > 0


def test_teacher_failure_keeps_what_arrived(tiny_config, tmp_path):
    from loop.errors import TeacherError

    class Flaky(ScriptedTeacher):
        def generate(self, requests):
            done = super().generate(requests[:2])
            raise TeacherError("server went away", partial=done)

    cfg = tiny_config()
    with pytest.raises(TeacherError, match="server went away"):
        run(cfg, tmp_path, Flaky(), name="flaky")
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    assert store.count("responses", "flaky") == 2
    assert store.spent("flaky").tokens > 0


def test_unload_before_train_frees_the_engine_each_round(tiny_config, tmp_path):
    class Counting(ScriptedTeacher):
        unloads = 0

        def unload(self):
            Counting.unloads += 1

    run(tiny_config(**{"teacher.unload_before_train": True}), tmp_path, Counting())
    assert Counting.unloads == 3  # before each of the 3 trainings (baseline + 2 rounds)


def test_unlabelled_pool_joins_mining(tiny_config, tmp_path):
    summary, parts = run(tiny_config(**{"data.pool_size": 40, "data.test_size": 150}), tmp_path)
    m = child_runs(parts.tracker)[1].data.metrics
    assert m["low_confidence"] > 0
    # unlabelled texts are never shown to the teacher as labelled exemplars
    pool = {e.text for e in parts.splits["pool"]}
    shown = " ".join(msg["content"] for call in parts.teacher.calls for r in call for msg in r.messages)
    assert not any(f"] {t}" in shown for t in pool)


def test_fixed_embedder_mining(tiny_config, tmp_path):
    summary, parts = run(tiny_config(**{"mining.embedder": "fixed"}), tmp_path)
    m = child_runs(parts.tracker)[1].data.metrics
    assert m["neighbourhoods"] >= 1 and summary["accepted_total"] > 0


def test_mine_dry_run_calls_no_teacher(tiny_config, tmp_path):
    from loop.controller import mine_dry_run
    cfg = tiny_config()
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    parts = Parts(task=ClassifyTask(cfg), student=TinyStudent(), teacher=None, embedder=HashEmbedder(),
                  splits=load_splits(cfg), store=store, tracker=tracker)
    metrics, mined, planned = mine_dry_run(cfg, parts, "dry")
    assert mined.hoods and metrics["requests_planned"] == len(planned.requests) > 0
    g = cfg.generation
    asked = sum(p.requests for p in planned.hoods.values())
    assert asked == min(g.targeted_requests, g.cluster_cap * len(mined.hoods))
    assert {h.id for h in mined.hoods} == set(planned.hoods)  # the plan, not the mined records, holds it
    [child] = child_runs(tracker)
    assert child.data.metrics["errors"] == mined.errors
    assert store.count("responses", "dry") == 0


def test_label_agreement_keeps_only_blind_agreement(tiny_config, tmp_path):
    class Opinionated(ScriptedTeacher):
        """Writes samples of every label, but labels everything 'neutral' when asked blind."""

        def generate(self, requests):
            if all(r.kind == "label" for r in requests):
                self.calls.append(list(requests))
                return [GenResult(request_id=r.id, text='{"label": "neutral"}', prompt_tokens=10,
                                  completion_tokens=5, finish_reason="stop", latency_s=0.0) for r in requests]
            return super().generate(requests)

    cfg = tiny_config(**{"filters.label_agreement": True, "loop.rounds": 1})
    summary, parts = run(cfg, tmp_path, Opinionated())
    label_calls = [c for c in parts.teacher.calls if all(r.kind == "label" for r in c)]
    assert len(label_calls) == 1 and label_calls[0]
    assert "Text:" in label_calls[0][0].messages[-1]["content"]
    # blind: the proposed label is not shown
    assert '"label": "' not in label_calls[0][0].messages[-1]["content"]
    accepted = parts.store.accepted("t")
    assert accepted and {e.label for e in accepted} == {"neutral"}
    m = child_runs(parts.tracker)[1].data.metrics
    assert m["rejected/rejected_label_disagreement"] > 0
    assert m["agreement_requests"] == len(label_calls[0])
    assert m["agreement_tokens"] == 15 * len(label_calls[0])
    assert summary["tokens_spent"] == parts.store.spent("t").tokens <= cfg.budget.tokens


def test_the_parents_accepted_curve_has_one_point_per_round(targeted):
    """The summary does not log accepted_total again at step 0 (the curve went 0 -> 119 -> 63 -> 119)."""
    import mlflow

    _, summary, parts, _ = targeted
    history = mlflow.tracking.MlflowClient().get_metric_history(parts.tracker.parent_id, "accepted_total")
    points = sorted((m.step, m.value) for m in history)
    assert [s for s, _ in points] == [0, 1, 2] and points[-1][1] == summary["accepted_total"]
    assert all(a <= b for (_, a), (_, b) in zip(points, points[1:]))


def test_loop_runs_lists_the_stores_runs_with_their_best_round(targeted, tmp_path):
    from click.testing import CliRunner

    from loop.cli import main

    cfg, summary, parts, _ = targeted
    res = CliRunner().invoke(main, ["runs", "--store", str(parts.store.path)])
    assert res.exit_code == 0, res.output
    header, line = res.output.splitlines()[:2]
    assert header.split()[:3] == ["run", "created", "status"]
    fields = line.split()
    assert fields[0] == "t" and "done" in fields and "targeted" in fields
    best = f"{summary['best_test_macro_f1']:.4f}"
    assert best in fields and str(summary["tokens_spent"]) in fields
    missing = CliRunner().invoke(main, ["runs", "--store", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 1 and "no run store" in missing.output


def test_the_experiment_opens_in_mlflows_training_view(targeted):
    import mlflow

    exp = mlflow.tracking.MlflowClient().get_experiment_by_name("loop")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
