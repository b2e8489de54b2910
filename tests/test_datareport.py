"""The data report: what reading found (duplicates, conflicts, empty rows, labels left out), counts per label
per split, warnings for labels a scored split lacks, and sizes that fit when they do not."""

import json

import pytest
from click.testing import CliRunner

from loop.cli import main
from loop.data import load_splits
from loop.datareport import data_report, lines, warnings
from loop.errors import ConfigError, DataError
from loop.tasks.classify import ClassifyTask

LABELS = ["negative", "neutral", "positive"]


def write(path, rows):
    path.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in rows) + "\n")
    return path


@pytest.fixture
def messy(tmp_path):
    """600 distinct rows; then 40 exact duplicates, 2 texts seen again with another label, 3 empty texts
    and 30 rows of a label outside the task."""
    rows = [(f"row text number {i}", LABELS[i % 3]) for i in range(600)]
    rows += rows[:40] + [("row text number 3", "neutral"), ("row text number 4", "negative")]
    rows += [("   ", "neutral")] * 3 + [(f"rare {i}", "rare") for i in range(30)]
    return write(tmp_path / "messy.jsonl", rows)


def test_reading_reports_what_it_dropped_and_why(messy, tiny_config):
    cfg = tiny_config(**{"data.source": str(messy), "data.drop_labels": ["rare"]})
    task = ClassifyTask(cfg)
    splits = task.load_splits()
    report = data_report(task, splits)
    assert report["rows"] == 645 and report["dropped_labels"] == 30
    assert report["duplicates"] == 42 and report["empty"] == 3
    assert [(c["kept"], c["others"]) for c in report["conflicts"]] == [("negative", ["neutral"]),
                                                                         ("neutral", ["negative"])]
    counts = report["counts"]["negative"]
    assert counts["train"] == 20 and counts["test"] == 67 and counts["dev_mine"] + counts["dev_stop"] == 67
    text = "\n".join(lines(report))
    assert "645 rows read, 42 duplicates dropped (7% of the rows), 3 empty, 2 texts with conflicting " \
           "labels" in text
    assert "30 rows of data.drop_labels left out" in text
    assert f"{messy}:" in text and "kept the first row's label 'negative'" in text


def test_a_label_missing_from_a_scored_split_is_warned(tmp_path, tiny_config):
    rows = [(f"common {i}", LABELS[i % 2]) for i in range(600)]
    rows += [(f"scarce {i}", "positive") for i in range(6)]  # one each for train and test, none for dev
    cfg = tiny_config(**{"data.source": str(write(tmp_path / "d.jsonl", rows)), "data.test_size": 100,
                         "data.dev_size": 100})
    task = ClassifyTask(cfg)
    said = warnings(data_report(task, task.load_splits()))
    assert any("stopping split (dev_stop) has no example of 1 label(s): positive" in w
               and "over the 2 labels present" in w for w in said)


def test_sizes_that_do_not_fit_come_with_sizes_that_do(tiny_config):
    cfg = tiny_config(**{"data.train_size": 500})
    with pytest.raises(DataError) as err:
        load_splits(cfg)
    hint = str(err.value).split("sizes that fit: ")[1]
    sizes = dict(part.split("=") for part in hint.replace("--set ", "").split())
    fit = tiny_config(**{k: int(v) for k, v in sizes.items()})
    splits = load_splits(fit)
    assert sum(len(splits[k]) for k in ("train", "dev_mine", "dev_stop", "test")) <= 600


def test_a_label_without_training_examples_names_the_option(tmp_path, tiny_config):
    rows = [(f"common {i}", LABELS[i % 2]) for i in range(600)] + [("only one", "positive")]
    cfg = tiny_config(**{"data.source": str(write(tmp_path / "d.jsonl", rows))})
    with pytest.raises(DataError, match=r"""data\.drop_labels=\["positive"\]"""):
        load_splits(cfg)
    with pytest.raises(ConfigError, match="data.drop_labels: positive also in task.labels"):
        tiny_config(**{"data.drop_labels": ["positive"]})


def test_loop_config_and_the_dry_run_print_the_report(messy, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{source: {messy}, train_size: 60, dev_size: 200, test_size: 200, "
                   "drop_labels: [rare]}\n")
    for args in (["config", "--config", str(cfg)], ["run", "--dry-run", "--config", str(cfg)]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        assert "645 rows read, 42 duplicates dropped" in res.output
        assert "2 texts with conflicting labels" in res.output
        assert "negative" in res.output and "dev_stop" in res.output
