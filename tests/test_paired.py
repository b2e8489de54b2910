"""The efficiency benchmark's paired statistics, on synthetic results whose answers are known."""

import json
import struct

import numpy as np
import pytest

from loop.bench.paired import (
    bootstrap_ci,
    gain_recovery,
    paired,
    plot,
    summary,
    table_lines,
    token_ratio,
)

BUDGETS = [1600, 3200, 6400]  # token-ratio grid step: 1600 // 16 = 100
NOISE = (0.0, 0.02, -0.01, 0.03)  # a seed moves every arm alike: the pairing removes it

# Per arm, the (tokens, test) rounds before the seed's noise. Targeted spends 2400 in all and ends at
# 0.60; random first reaches 0.60 at 4800 tokens (twice targeted's) and ends at 0.58; real gains twice
# what targeted gains over none at every budget (gain recovery 0.5).
CURVES = {
    "none": [(0, 0.40)],
    "all_labels": [(0, 0.90)],
    "targeted": [(0, 0.40), (1200, 0.50), (2400, 0.60)],
    "random": [(0, 0.40), (1600, 0.45), (3200, 0.50), (4800, 0.60), (6400, 0.58)],
    "real": [(0, 0.40), (1200, 0.60), (2400, 0.80)],
    "active": [(0, 0.40), (1200, 0.48), (2400, 0.55)],
}


def curve(points, noise=0.0):
    return [{"round": i, "tokens": t, "accepted": 0, "test": m + noise, "stop": m + noise}
            for i, (t, m) in enumerate(points)]


def result(arms=tuple(CURVES), curves=None, noise=NOISE):
    curves = {**CURVES, **(curves or {})}
    runs = [{"strategy": arm, "seed": seed, "rounds": curve(curves[arm], n)}
            for arm in arms for seed, n in enumerate(noise)]
    return {"task": "toy", "metric": "macro_f1", "budgets": BUDGETS, "runs": runs}


# -- bootstrap_ci ---------------------------------------------------------------------------------------

def test_bootstrap_ci_percentiles():
    # the mean of two draws from [0, 1] is 0, 0.5 or 1 with odds 1:2:1
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert bootstrap_ci([0.0, 1.0], level=0.4) == (0.5, 0.5)
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci([0.0, 0.0, 10.0], stat=np.median) == (0.0, 10.0)


def test_bootstrap_ci_is_deterministic_given_its_seed():
    values = list(np.random.default_rng(5).normal(size=8))
    low, high = bootstrap_ci(values)
    assert bootstrap_ci(values) == (low, high) != bootstrap_ci(values, seed=1)
    assert low < np.mean(values) < high
    narrow = bootstrap_ci(values, level=0.5)
    assert low < narrow[0] < narrow[1] < high
    with pytest.raises(ValueError):
        bootstrap_ci([])


# -- paired ---------------------------------------------------------------------------------------------

def test_a_constant_offset_has_a_zero_width_ci():
    r = result(("targeted", "random"), {"random": [(0, 0.35), (1200, 0.45), (2400, 0.55)]})
    d = paired(r, "targeted", "random")
    assert list(d) == ["1600", "3200", "6400"]
    for entry in d.values():
        assert entry["mean"] == pytest.approx(0.05)
        assert (entry["low"], entry["high"]) == pytest.approx((0.05, 0.05))
        assert entry["seeds"] == 4 and entry["diffs"] == pytest.approx([0.05] * 4)


def test_differences_are_paired_by_seed_over_the_seeds_both_ran():
    r = result(("targeted", "none"))
    r["runs"].reverse()  # order in the file does not matter
    r["runs"].append({"strategy": "none", "seed": 9, "rounds": curve([(0, 0.0)])})  # targeted has no seed 9
    d = paired(r, "targeted", "none")
    assert d["6400"]["seeds"] == 4 and d["6400"]["diffs"] == pytest.approx([0.2] * 4)
    assert d["1600"]["mean"] == pytest.approx(0.1)


def test_noisy_differences_have_a_ci_around_zero():
    r = result(("targeted", "random"))
    for run, sign in zip([x for x in r["runs"] if x["strategy"] == "random"], (1, -1, 1, -1)):
        run["rounds"] = curve(CURVES["targeted"], NOISE[run["seed"]] + sign * 0.03)
    d = paired(r, "targeted", "random")["6400"]
    assert d["mean"] == pytest.approx(0.0, abs=1e-12)
    assert d["low"] < 0 < d["high"]


def test_a_missing_arm_gives_no_differences():
    assert paired(result(("targeted",)), "targeted", "random") == {}


# -- token ratio ----------------------------------------------------------------------------------------

def test_token_ratio_two_when_random_needs_twice_the_tokens():
    t = token_ratio(result(("random", "targeted")))
    assert t["reached"] and t["random_tokens"] == 4800 and t["targeted_tokens"] == 2400
    assert t["value"] == pytest.approx(2.0)
    # the seeds' noise moves both arms alike: paired resamples all give 2
    assert (t["low"], t["high"]) == pytest.approx((2.0, 2.0))


def test_token_ratio_is_a_lower_bound_when_random_never_gets_there():
    r = result(("random", "targeted"), {"random": [(0, 0.40), (3200, 0.50), (6400, 0.55)]})
    t = token_ratio(r)
    assert not t["reached"] and t["random_tokens"] is None
    assert t["value"] == pytest.approx(6400 / 2400) and t["low"] == pytest.approx(6400 / 2400)


def test_token_ratio_ci_spreads_when_seeds_disagree():
    r = result(("random", "targeted"))
    fast = [(0, 0.40), (2400, 0.70), (6400, 0.70)]  # seeds 0 and 1 of random reach 0.60 at 2400
    for run in r["runs"]:
        if run["strategy"] == "random" and run["seed"] < 2:
            run["rounds"] = curve(fast, NOISE[run["seed"]])
    t = token_ratio(r)
    assert t["low"] < t["value"] < t["high"] and t["low"] >= 1.0 - 1e-9


def test_token_ratio_needs_both_arms():
    assert token_ratio(result(("random", "none"))) == {}


# -- gain recovery --------------------------------------------------------------------------------------

def test_gain_recovery_half_of_reals_gain():
    g = gain_recovery(result(("targeted", "none", "real")))
    assert list(g) == ["1600", "3200", "6400"]
    for entry in g.values():
        assert entry["value"] == pytest.approx(0.5)
        assert (entry["low"], entry["high"]) == pytest.approx((0.5, 0.5))


def test_gain_recovery_none_where_real_gains_nothing():
    g = gain_recovery(result(("targeted", "none", "real"), {"real": [(0, 0.40), (2400, 0.40)]}))
    assert g["6400"] == {"value": None, "low": None, "high": None}
    assert gain_recovery(result(("targeted", "none"))) == {}


# -- summary, lines, plot -------------------------------------------------------------------------------

def test_summary_is_json_and_holds_the_verdicts():
    s = summary(result())
    json.dumps(s, allow_nan=False)
    assert set(s) == {"table", "paired", "token_ratio", "gain_recovery", "verdicts", "seeds"}
    assert set(s["paired"]) == {"targeted-random", "targeted-none", "targeted-all_labels", "targeted-real",
                                "targeted-active"}  # no crossval arm
    assert s["table"]["all_labels"]["1600"]["mean"] == s["table"]["all_labels"]["6400"]["mean"]
    assert s["table"]["random"]["6400"]["mean"] == pytest.approx(0.58 + np.mean(NOISE))
    assert s["table"]["targeted"]["6400"]["seeds"] == 4 and s["table"]["random"]["1600"]["std"] > 0
    assert s["paired"]["targeted-random"]["6400"]["mean"] == pytest.approx(0.02)
    assert s["verdicts"] == {"targeted_half_tokens": True, "targeted_above_random_at_max": True,
                             "gain_recovery_ge_0_8": False, "crossval_above_all_labels": None}


def test_crossval_verdict():
    r = result(("all_labels",))
    r["runs"] += [{"strategy": "crossval", "seed": s, "rounds": curve([(0, 0.92)], n)}
                  for s, n in enumerate(NOISE)]
    s = summary(r)
    assert s["verdicts"]["crossval_above_all_labels"] is True
    assert s["paired"]["crossval-all_labels"]["6400"]["mean"] == pytest.approx(0.02)


def test_missing_arms_give_empty_entries_not_errors(tmp_path):
    r = result(("none",))
    s = summary(r)
    assert s["paired"] == {} and s["token_ratio"] == {} and s["gain_recovery"] == {}
    assert set(s["verdicts"].values()) == {None}
    assert any("n/a" in line for line in table_lines(r, s))
    plot(r, tmp_path / "none.png")
    assert (tmp_path / "none.png").is_file()


def test_table_lines():
    lines = table_lines(result())
    assert "targeted \u2212 random @6400: +0.0200 [+0.0200, +0.0200] (n=4)" in lines
    assert any(line.startswith("targeted ") and "0.6100 \u00b1 " in line for line in lines)
    ratio = next(line for line in lines if line.startswith("token ratio"))
    assert "2.00 [2.00, 2.00]" in ratio and "random 4800" in ratio
    assert "gain recovery (targeted \u2212 none) / (real \u2212 none) @6400: 0.50 [0.50, 0.50]" in lines
    assert lines[-1].startswith("verdicts: targeted_half_tokens: yes")


def test_plot_writes_a_two_panel_png(tmp_path):
    path = tmp_path / "bench.png"
    plot(result(), path)
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", head[16:24])
    assert width > 2 * height  # two panels side by side
