"""Planning that learns across rounds (generation.followup_boost) and asks for minimal pairs
(generation.minimal_pairs)."""

from __future__ import annotations

import pytest
from conftest import ROOT

from loop.config import load_config
from loop.errors import ConfigError
from loop.mining import HardCase, Neighbourhood
from loop.plan import followup_weights, plan_targeted
from loop.records import Example
from loop.tasks.classify import ClassifyTask


def hood(i: int, confusion: tuple[str, str], mass: float = 2.0) -> Neighbourhood:
    cases = [HardCase(Example(f"case {i} {j}", confusion[0]), confusion[1], confusion[1], 0.0, 1.0, True, 1.0,
                      0.1) for j in range(3)]
    ranked = [Example(f"exemplar {i} {j}", confusion[0]) for j in range(6)]
    neighbours = [(Example(f"contrast {i} {j}", confusion[1]), 0.9) for j in range(3)]
    return Neighbourhood(i, cases, neighbours, mass, 0.5, 0.5, confusion, ranked)


def row(confusion: str, then: float, now: float, requests: int = 2) -> dict:
    return {"neighbourhood": 0, "confusion": confusion, "cases": 4, "requests": requests,
            "error_rate_then": then, "error_rate_now": now}


def test_followup_weights_boost_what_stayed_broken_and_damp_what_was_fixed():
    hoods = [hood(0, ("negative", "neutral")), hood(1, ("positive", "neutral")),
             hood(2, ("neutral", "positive"))]
    followed = [row("negative -> neutral", 0.5, 0.75), row("positive -> neutral", 0.8, 0.25),
                row("neutral -> positive", 0.5, 0.75, requests=0)]  # not prompted last round: no verdict
    assert followup_weights(hoods, followed, 2.0) == [2.0, 0.5, 1.0]
    assert followup_weights(hoods, followed, 1.0) == [1.0, 1.0, 1.0]
    assert followup_weights(hoods, [row("negative -> neutral", 0.8, 0.6)], 2.0)[0] == 1.0  # some progress


def test_a_confusion_that_stayed_broken_gets_more_of_the_rounds_prompts():
    cfg = load_config(None, {"generation.targeted_requests": 6, "generation.followup_boost": 3.0,
                             "generation.cluster_floor": 1, "generation.cluster_cap": 6,
                             "task.prompts": str(ROOT / "prompts" / "classify")})
    task = ClassifyTask(cfg)
    hoods = [hood(0, ("negative", "neutral")), hood(1, ("positive", "neutral"))]
    plain = plan_targeted(hoods, task, cfg, 2)
    learned = plan_targeted(hoods, task, cfg, 2, followed=[row("positive -> neutral", 0.5, 0.5)])
    assert plain.hoods[0].requests == plain.hoods[1].requests == 3
    assert learned.hoods[1].requests > learned.hoods[0].requests and learned.hoods[1].weight == 3.0
    assert learned.hoods[1].requests + learned.hoods[0].requests == 6


def test_minimal_pairs_ask_for_both_sides_of_the_confusion():
    cfg = load_config(None, {"generation.minimal_pairs": True, "generation.targeted_requests": 2,
                             "generation.revise_requests": 0,
                             "task.prompts": str(ROOT / "prompts" / "classify")})
    planned = plan_targeted([hood(0, ("negative", "neutral"))], ClassifyTask(cfg), cfg, 1)
    assert [r.kind for r in planned.requests] == ["pairs", "pairs"] and planned.hoods[0].kind == "pairs"
    prompt = planned.requests[0].messages[-1]["content"]
    assert "2 minimal pairs" in prompt and 'first text of each pair "negative"' in prompt
    assert 'second "neutral"' in prompt and "exemplar 0 0" in prompt and "contrast 0 0" in prompt


def test_minimal_pairs_need_their_template_and_a_task_labelled_by_the_teacher(tmp_path):
    import shutil

    folder = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts" / "classify", folder)
    (folder / "pairs.j2").unlink()
    cfg = load_config(None, {"generation.minimal_pairs": True, "task.prompts": str(folder)})
    with pytest.raises(ConfigError, match="generation.minimal_pairs: .*pairs.j2 not found"):
        ClassifyTask(cfg)
    with pytest.raises(ConfigError, match="minimal_pairs: task defects is labelled by running code"):
        load_config(ROOT / "configs" / "defects.yaml", {"generation.minimal_pairs": True})
