"""A corpus of bad configs and bad data files through the CLI: each gets a clear error naming the
file, line or key, and none a traceback."""

import json

import pytest
from click.testing import CliRunner

from loop.cli import main

CONFIGS = {
    "unknown key": ("budget:\n  tokenz: 3\n", "unknown key 'tokenz'"),
    "unknown section": ("budgett:\n  tokens: 3\n", "unknown key 'budgett'"),
    "wrong type": ("budget:\n  tokens: lots\n", "budget.tokens: expected int"),
    "zero budget": ("budget:\n  tokens: 0\n", "budget.tokens: must be > 0"),
    "negative samples": ("budget:\n  samples: -5\n", "budget.samples: must be > 0"),
    "money without prices": ("budget:\n  money: 3.0\n", "budget.money: a money cap needs"),
    "bad strategy": ("generation:\n  strategy: psychic\n", "generation.strategy: must be"),
    "not a mapping": ("- just\n- a list\n", "expected a mapping"),
    "not yaml": ("budget: [unclosed\n", "not valid YAML"),
    "missing prompts": ("task:\n  prompts: /nonexistent/prompts\n", "not found"),
    "codegen with encoder": ("task:\n  name: codegen\n  labels: [pass, fail]\n", "student.name"),
}


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_configs(tmp_path, case):
    text, message = CONFIGS[case]
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    res = _invoke("run", "--dry-run", "--config", str(p), "--set", f"run.dir={tmp_path}/runs")
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)  # a clean exit, not an escaped exception


LABELS = ("negative", "neutral", "positive")


def _rows(n):
    return "".join(json.dumps({"text": f"row {i} words here", "label": LABELS[i % 3]}) + "\n" for i in range(n))


DATA = {
    "empty file": (b"", "no rows"),
    "wrong encoding": ("caf\u00e9 row\n".encode("latin-1") * 3, "UTF-8"),
    "bad json line": (_rows(5).encode() + b"{not json\n", ":6"),
    "missing column": (_rows(5).encode() + b'{"text": "no label"}\n', ":6"),
    "label not in set": (_rows(5).encode() + json.dumps({"text": "x y", "label": "furious"}).encode() + b"\n",
                         "furious"),
}


@pytest.mark.parametrize("case", sorted(DATA))
def test_bad_data_files(tmp_path, case):
    content, message = DATA[case]
    p = tmp_path / "data.jsonl"
    p.write_bytes(content)
    res = _invoke("run", "--dry-run", "--set", f"data.source={p}", "--set", f"run.dir={tmp_path}/runs",
                  "--set", "data.train_size=2", "--set", "data.dev_size=2", "--set", "data.test_size=1")
    assert res.exit_code == 1, (case, res.output)
    assert "DataError" in res.output and message in res.output and "Traceback" not in res.output, res.output


def test_a_10_mb_line_is_read_not_fatal(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text(_rows(30) + json.dumps({"text": "w " * 5_000_000, "label": "neutral"}) + "\n")
    res = _invoke("run", "--dry-run", "--set", f"data.source={p}", "--set", f"run.dir={tmp_path}/runs",
                  "--set", "data.train_size=9", "--set", "data.dev_size=6", "--set", "data.test_size=6",
                  "--set", "teacher.model=no-such-model")
    assert res.exit_code == 0 and "per round" in res.output, res.output
