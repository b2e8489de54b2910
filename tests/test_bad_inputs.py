"""A corpus of bad configs and bad data files through the CLI: each gets a clear error naming the
file, line or key, and none a traceback (an awkward but ordinary file, marked None, is read)."""

import time

import pytest
from conftest import HashEmbedder

from loop.bench.hostile import (
    CONFIGS,
    DATA,
    LABELS,
    config_handled,
    data_handled,
    replies,
    reply_handled,
    screen_reply,
)
from loop.cli import main
from loop.tasks.classify import ClassifyTask


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_configs(tmp_path, case):
    ok, output = config_handled(*CONFIGS[case], tmp_path, main)
    assert ok, output


@pytest.mark.parametrize("case", sorted(DATA))
def test_bad_data_files(tmp_path, case):
    ok, output = data_handled(*DATA[case], tmp_path, main)
    assert ok, output


def _hostile_setup(cfg, task, embedder):
    from loop.filters import Reference
    from loop.plan import plan_random

    splits = task.load_splits()
    req = plan_random(splits["train"], task, cfg, 1)[0]
    echo = "\n".join(m["content"] for m in req.messages)
    known = Reference(embedder, splits["train"] + splits["dev_mine"])
    evaluation = Reference(embedder, splits["dev_stop"] + splits["test"])
    return req, echo, known, evaluation


@pytest.mark.parametrize("name", sorted(replies("classify", "", list(LABELS))))
def test_hostile_teacher_replies_are_counted_rejections(tiny_config, name):
    cfg = tiny_config()
    task = ClassifyTask(cfg)
    req, echo, known, evaluation = _hostile_setup(cfg, task, HashEmbedder())
    start = time.perf_counter()
    cands = screen_reply(task, replies("classify", echo, task.labels)[name], req, known, evaluation, cfg)
    assert reply_handled(cands), [(c.verdict, c.reason, c.text[:60]) for c in cands]
    assert time.perf_counter() - start < 10  # a 1 MB reply is not a denial of service


def test_hostile_replies_to_a_code_task_are_counted_rejections(code_config):
    from loop.components import build_task

    cfg = code_config("defects")
    task = build_task(cfg)
    req, echo, known, evaluation = _hostile_setup(cfg, task, HashEmbedder())
    for name, text in replies("defects", echo, task.labels).items():
        cands = screen_reply(task, text, req, known, evaluation, cfg)
        assert reply_handled(cands), (name, [(c.verdict, c.reason, c.text[:60]) for c in cands])


def test_a_real_run_checks_the_run_folder_before_anything_else(tmp_path):
    """An unwritable run.dir was a FileNotFoundError traceback in a real run (and passed the dry run)."""
    from loop.bench.hostile import cli

    res = cli(main, "run", "--set", "run.dir=/dev/null/runs", "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db")
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "ConfigError: run.dir: cannot write /dev/null/runs (/dev/null is not a folder)" in res.output
