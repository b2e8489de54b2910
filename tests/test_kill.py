"""SIGKILL anywhere, resume, and end exactly where an uninterrupted run ends: real processes killed
with SIGKILL at each kind of point, a real store, real MLflow, a replayed cassette."""

import os
from pathlib import Path

from conftest import ROOT

from loop.bench import reliability


def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_data):
    overrides = {"data.source": str(tiny_data), "data.train_size": 60, "data.dev_size": 200,
                 "data.test_size": 200, "task.prompts": str(ROOT / "prompts" / "classify"),
                 "budget.tokens": 6000, "loop.rounds": 2, "loop.patience": 5}
    env = {"PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = reliability.run(None, overrides, tmp_path / "bench", trials=20, seed=7,
                             factory="tiny_parts:tiny_parts", env=env, workers=2)
    clean, s = result["clean"], result["summary"]
    assert clean["accepted"] > 0 and clean["responses"] > 0
    assert clean["counts"]["teacher"] >= 2 and clean["counts"]["mlflow"] > 10
    # every trial at a kill point was really killed; one killed after a random delay may have finished first
    fixed = [t for t in result["trials"] if t["point"] != "random"]
    assert s["trials"] == 20 and all("killed" in t["ends"] for t in fixed)
    assert s["killed"] >= len(fixed) + 1
    assert set(s["by_point"]) == set(reliability.POINTS) and min(s["by_point"].values()) >= 3
    assert s["survived"] == 20, [t for t in result["trials"] if not t["finished"]]
    assert s["paid_twice"] == 0 and s["lost"] == 0 and s["duplicated"] == 0 and s["overshoot"] == 0
    assert all("failed" not in t["ends"] for t in result["trials"])  # every launch ended by kill or success
