"""Any label string works as a metric name: MLflow gets sanitized, unique names; the original labels
stay in the artifacts (metric_names.json, per_class_test.json) and in the run store."""

import json
import re

import mlflow
import pytest
from conftest import HashEmbedder, ScriptedTeacher, TinyStudent, make_examples

from loop.controller import Parts, run_loop
from loop.data import load_splits
from loop.store import RunStore
from loop.tasks.classify import ClassifyTask
from loop.tracking import Tracker, metric_names

# Banking77's label, and others MLflow refuses or would read as a path
LABELS = ["reverted_card_payment?", "reverted_card_payment!", "card/payment/", "über?"]
MLFLOW_NAME = re.compile(r"^[/\w.\- :]*$")


def test_names_are_valid_unique_and_stable():
    keys = [f"stop_precision_{lab}" for lab in LABELS] + ["stop_precision_reverted_card_payment_", "x" * 300,
                                                         "stop_macro_f1", "a/../b"]
    names = metric_names(keys)
    assert names["stop_macro_f1"] == "stop_macro_f1"
    # per-class scores go under a group folder, the headline figures stay at the top
    assert names["stop_precision_reverted_card_payment_"] == "per_class/stop_precision_reverted_card_payment_"
    assert len(set(names.values())) == len(keys)
    assert all(MLFLOW_NAME.match(n) and len(n) <= 250 for n in names.values())
    assert metric_names(list(reversed(keys))) == names  # the same names every round, whatever the order
    taken = metric_names(keys[:2])  # names given in an earlier round stay, whatever comes later
    again = metric_names(keys, taken)
    assert {k: again[k] for k in taken} == taken and len(set(again.values())) == len(keys)


def test_a_real_mlflow_store_takes_any_label(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path}/mlruns/mlflow.db", "labels")
    metrics = {f"stop_precision_{lab}": 0.5 for lab in LABELS}
    metrics["stop_macro_f1"] = 0.25
    with tracker.parent("p", {"task": {"labels": LABELS}}, {}):
        with tracker.round(0) as run:
            tracker.log_round(0, metrics)
            tracker.log_round(1, metrics)
    client = mlflow.tracking.MlflowClient()
    logged = client.get_run(run.info.run_id).data.metrics
    assert len(logged) == len(metrics) and logged["stop_macro_f1"] == 0.25
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="metric_names.json",
                                               dst_path=str(tmp_path / "dl"))
    mapping = json.loads(open(path).read())
    assert set(mapping.values()) == {f"stop_precision_{lab}" for lab in LABELS}
    assert set(mapping) | {"stop_macro_f1"} == set(logged)


def test_a_run_with_labels_mlflow_refuses(tmp_path, tiny_config):
    """Banking77's `reverted_card_payment?` crashed a run after its baseline had trained."""
    data = tmp_path / "odd.jsonl"
    with open(data, "w") as fh:
        for _i, ex in enumerate(make_examples(600, seed=1, prefix="row")):
            fh.write(json.dumps({"text": ex.text,
                                 "label": LABELS[["negative", "neutral", "positive"].index(ex.label)]})
                     + "\n")
    cfg = tiny_config(**{"data.source": str(data), "task.labels": LABELS[:3], "loop.rounds": 1})
    store = RunStore(tmp_path / "runs" / "store.sqlite")
    store.start_run("odd", cfg.to_dict())
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    parts = Parts(task=ClassifyTask(cfg), student=TinyStudent(LABELS[:3]), teacher=ScriptedTeacher(),
                  embedder=HashEmbedder(), splits=load_splits(cfg), store=store, tracker=tracker)
    summary = run_loop(cfg, parts, "odd", tmp_path / "runs" / "odd")
    assert summary["rounds_run"] == 1
    client = mlflow.tracking.MlflowClient()
    child = client.search_runs([client.get_experiment_by_name("loop").experiment_id],
                               f"tags.mlflow.parentRunId = '{tracker.parent_id}' and tags.round = '0'")[0]
    dst = str(tmp_path / "dl")
    rows = json.loads(open(mlflow.artifacts.download_artifacts(run_id=child.info.run_id,
                                                               artifact_path="per_class_test.json",
                                                               dst_path=dst)).read())
    assert [r[0] for r in rows["data"]] == LABELS[:3]  # the report keeps the labels as they are
    assert f"test_precision_{LABELS[0]}" in store.round_rows("odd")[0]["metrics"]
    store.close()


@pytest.mark.parametrize("label", ["a?", "a/", "../x", "a//b", " ", "x" * 400])
def test_any_single_label_is_accepted_by_mlflow(tmp_path, label):
    from mlflow.utils.validation import _validate_metric_name

    for name in metric_names([f"test_f1_{label}", "test_f1_a_"]).values():
        _validate_metric_name(name)
