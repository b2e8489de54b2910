"""`loop bench teacher` machinery on a local fake server (the real engines run in the slow tests)."""

from conftest import ROOT
from fake_openai import FakeOpenAI

from loop.bench.teacher import bench_requests, run_bench
from loop.config import load_config


def cfg():
    return load_config(str(ROOT / "configs" / "default.yaml"))


def test_bench_requests_are_greedy_round_prompts():
    reqs = bench_requests(cfg(), 8, 64)
    assert len(reqs) == 8 and {r.kind for r in reqs} == {"targeted", "self_revise"}
    assert all(r.temperature == 0.0 and r.max_tokens == 64 and r.json_schema for r in reqs)
    assert len({r.id for r in reqs}) == 8


def test_bench_openai_row(tmp_path):
    with FakeOpenAI() as server:
        rows = run_bench(cfg(), ["openai"], n=4, max_tokens=32, repeats=2, single=0, url=server.url, port=0)
    [row] = rows
    assert row["backend"] == "openai" and row["requests"] == 4
    assert row["loop_tok_s"] > 0 and row["raw_tok_s"] > 0 and row["ratio"] > 0
    assert row["parse_rate"] == 1.0


def test_fleet_bench_spreads_requests_over_every_server(tmp_path):
    import json

    from click.testing import CliRunner

    from loop.cli import main

    out = tmp_path / "fleet.json"
    res = CliRunner().invoke(main, ["bench", "teacher", "--servers", "2", "--requests", "16",
                                    "--repeats", "1", "--latency", "0.05", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    assert [r["servers"] for r in rows] == [1, 2]
    assert sum(rows[1]["answered_by_server"]) == 16 and min(rows[1]["answered_by_server"]) >= 6  # shared
    assert rows[0]["speedup"] == 1.0 and rows[1]["requests_per_s"] > 0
