"""The run report (`loop report`): built from the store alone, written at the end of every run, and logged to
the MLflow parent run. The fake-backed loop of test_controller; the real run is rendered in Chromium in
test_report_browser.py."""

import html
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, make_examples
from test_controller import run

from loop.cli import main
from loop.config import load_config
from loop.plots import confusion_png, most_confused
from loop.runreport import build
from loop.store import RunStore


def _sections(page: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", page)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three fake-backed runs in one store: targeted `t`, the same config's `none` run `n`, and `other` (a
    random run of another budget). Returns (folder, t's config, t's summary, t's parts)."""
    tmp = tmp_path_factory.mktemp("report")
    with open(tmp / "tweets.jsonl", "w") as fh:
        for ex in make_examples(600, seed=1, prefix="row"):
            fh.write(json.dumps({"text": ex.text, "label": ex.label}) + "\n")

    def config(**overrides):
        base = {"data.source": str(tmp / "tweets.jsonl"), "data.train_size": 60, "data.dev_size": 200,
                "data.test_size": 200, "task.prompts": str(ROOT / "prompts" / "classify"),
                "tracking.uri": f"sqlite:///{tmp}/mlruns/mlflow.db", "run.dir": str(tmp / "runs"),
                "budget.tokens": 20000, "loop.rounds": 2, "loop.patience": 5, **overrides}
        return load_config(None, base)

    cfg = config()
    summary, parts = run(cfg, tmp, name="t")
    run(config(**{"generation.strategy": "none"}), tmp, name="n")
    run(config(**{"generation.strategy": "random", "budget.tokens": 9000}), tmp, name="other")
    return tmp, cfg, summary, parts


def test_each_run_writes_its_report_and_logs_it(runs):
    tmp, cfg, summary, parts = runs
    path = tmp / "runs" / "t" / "report.html"
    assert summary["report"] == str(path) and path.is_file()
    page = path.read_text()
    assert _sections(page) == ["Test macro_f1 against tokens spent", "Per-class F1: baseline vs best round",
                               "Confusion matrix before and after", "Rounds"]
    assert page.count("data:image/png;base64,") == 3  # the curve, the confusion matrix before and after
    assert "<h3>Round 1</h3>" in page and "<h3>Round 2</h3>" in page
    # every class of the task has its row, every neighbourhood its line, every accepted sample is findable
    for label in cfg.task.labels:
        assert f"<tr><td>{label}</td>" in page
    rounds = parts.store.round_rows("t", analysis=True)
    hoods = rounds[1]["analysis"]["neighbourhoods"]
    assert hoods and all(f"neighbourhood {h['neighbourhood']}:" in page for h in hoods)
    cands = parts.store.candidates("t")
    accepted = [c for c in cands if c["verdict"] == "accepted"]
    assert accepted and html.escape(accepted[0]["text"][:400]) in page
    for reason in {c["reason"] for c in cands if c["verdict"] == "rejected"}:
        assert f"<summary>{html.escape(reason)} (" in page
    # round 2's follow-up says whether round 1's neighbourhoods were fixed
    first = rounds[2]["analysis"]["followup"][0]
    assert f"{first['error_rate_then']:.2f} -&gt; {first['error_rate_now']:.2f}" in page
    client = parts.tracker.mlflow.tracking.MlflowClient()
    logged = [a.path for a in client.list_artifacts(parts.tracker.parent_id)]
    assert "report.html" in logged and "data_report.json" in logged  # and what the data was


def test_report_draws_the_same_configs_other_strategies(runs):
    """The `none` run of the same config is on the chart; a run of another config is not."""
    store = RunStore(runs[0] / "runs" / "store.sqlite")
    assert "beside 1 run(s) of the same config with another strategy" in build(store, "t")
    assert "no `none` or `random` run" in build(store, "other")


def test_a_round_stored_without_analysis_still_reports(tmp_path):
    """Stores from before rounds kept their analysis: the report says what it cannot show."""
    store = RunStore(tmp_path / "store.sqlite")
    store.start_run("old", {"task": {"name": "classify"}, "generation": {"strategy": "targeted"},
                            "teacher": {"model": "m"}, "loop": {"metric": "macro_f1"}})
    for rnd, f1 in ((0, 0.5), (1, 0.6)):
        store.finish_round("old", rnd, {"stop_macro_f1": f1, "test_macro_f1": f1, "test_f1_a": f1,
                                        "tokens_spent_total": 100 * rnd}, None)
    page = build(store, "old")
    assert "no confusion counts stored for this run" in page and "<h3>Round 1</h3>" in page


def test_report_escapes_what_the_teacher_wrote(runs, tmp_path):
    import sqlite3

    src, dst = sqlite3.connect(runs[0] / "runs" / "store.sqlite"), sqlite3.connect(tmp_path / "s.sqlite")
    src.backup(dst)
    src.close()
    dst.close()
    store = RunStore(tmp_path / "s.sqlite")
    store.db.execute("UPDATE candidates SET text='<script>alert(1)</script>' WHERE run_id='t'")
    page = build(store, "t")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_command_and_its_errors(runs, tmp_path):
    db = runs[0] / "runs" / "store.sqlite"
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", "--store", str(db), "-o", str(out)])  # the latest run
    assert res.exit_code == 0, res.output
    assert out.is_file() and "loop run other" in out.read_text()
    res = CliRunner().invoke(main, ["report", "nope", "--store", str(db)])
    assert res.exit_code != 0 and "no run 'nope'" in res.output and "loop runs" in res.output


def test_confusion_at_many_labels_shows_the_most_confused(tmp_path):
    rng = np.random.default_rng(0)
    mat = np.diag(rng.integers(5, 20, 77))
    mat[3, 40] = mat[40, 3] = 9  # the two labels most involved in errors
    mat[70, 71] = 4
    keep = most_confused(mat, top=20)
    assert len(keep) == 20 and {3, 40, 70, 71} <= set(keep) and keep == sorted(keep)
    shown = confusion_png(mat, [f"label_{i}" for i in range(77)], tmp_path / "c.png", "t")
    assert shown == keep and (tmp_path / "c.png").stat().st_size > 1000
    assert most_confused(mat[:5, :5], top=20) == [0, 1, 2, 3, 4]


def test_round_analysis_survives_the_store(tmp_path):
    """Numpy numbers in a task's tables are stored as plain JSON."""
    store = RunStore(tmp_path / "store.sqlite")
    store.start_run("r", {})
    store.finish_round("r", 0, {"m": 1.0}, None, {"tables": {"t.json": [{"rank": np.int64(3)}]}})
    row = store.round_rows("r", analysis=True)[0]
    assert row["analysis"] == {"tables": {"t.json": [{"rank": 3}]}}
    stored = json.loads(store.db.execute("SELECT analysis FROM rounds").fetchone()[0])
    assert stored["tables"]["t.json"][0]["rank"] == 3


def test_the_map_marks_each_neighbourhood_at_its_cases(tmp_path):
    from types import SimpleNamespace as NS

    from loop.plots import embedding_map_png
    from loop.report import hood_marks

    case = lambda i: NS(example=NS(id=f"e{i}"))  # noqa: E731
    mined = NS(ids=[f"e{i}" for i in range(6)],
               hoods=[NS(id=0, confusion=("neutral", "negative"), cases=[case(1), case(4)]),
                      NS(id=1, confusion=None, cases=[case(5), NS(example=NS(id="gone"))])])
    marks = hood_marks(mined)
    assert marks == [("#0 neutral->negative", [1, 4]), ("#1", [5])]
    vecs = np.random.default_rng(0).normal(size=(6, 8)).astype("float32")
    xy = embedding_map_png(vecs, ["correct"] * 6, None, tmp_path / "m.png", "t", marks)
    assert xy.shape == (6, 2) and (tmp_path / "m.png").stat().st_size > 1000
