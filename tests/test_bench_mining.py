"""`loop bench mining` machinery on small pools: in memory and memory-mapped from disk."""

import json

from click.testing import CliRunner

from loop.cli import main


def test_mining_bench_in_memory_and_memory_mapped(tmp_path):
    out = tmp_path / "m.json"
    args = ["bench", "mining", "--pools", "3000", "--hard-cases", "200", "--data", "synthetic",
            "--index", "ivfsq"]
    res = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    [row] = json.loads(out.read_text())
    assert row["kind"] == "ivfsq" and row["recall_at_10"] >= 0.9 and row["speedup_vs_exact"] > 0
    disk = tmp_path / "pools"
    res = CliRunner().invoke(main, [*args, "--dtype", "float16", "--disk", str(disk), "--out", str(out)])
    assert res.exit_code == 0, res.output
    [row] = json.loads(out.read_text())
    assert row["memory_mapped"] and row["dtype"] == "float16" and row["recall_at_10"] >= 0.9
    assert row["exact_queries"] == 200 and row["speedup_vs_exact"] is None
    assert [p.name for p in disk.iterdir()] == ["pool-synthetic-3000-0-float16.npy"]
