"""Paired statistics and the plot of the efficiency benchmark.

Every arm (strategy) of the benchmark runs on the same seeds, and a seed fixes the data
split and the student's initialisation, so arms are compared seed by seed: the per-seed
differences, not the two arms' spreads, carry the comparison. Confidence intervals are
percentile bootstraps over seeds; statistics that involve several arms (the token ratio,
the gain recovery) resample the same seed indices for every arm, keeping the pairing.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ARMS = ("none", "all_labels", "random", "targeted", "real", "active", "crossval")
COLOURS = {"none": "tab:gray", "all_labels": "black", "random": "tab:blue", "targeted": "tab:red",
           "real": "tab:green", "active": "tab:orange", "crossval": "tab:purple"}
# (a, b) pairs whose difference a − b the summary reports, when both arms ran
PAIRS = (("targeted", "random"), ("targeted", "none"), ("targeted", "all_labels"), ("targeted", "real"),
         ("targeted", "active"), ("crossval", "all_labels"))
N_BOOT, LEVEL = 10000, 0.95
TINY = 1e-9  # a denominator below this is treated as zero; a metric within it of a target reaches it


# -- bootstrap ------------------------------------------------------------------------------------------

def at_budget(curve: list[dict], budget: int) -> dict:
    """The student a run had after its last round within `budget` tokens, and the one the loop would
    keep (best stop-split metric so far)."""
    within = [r for r in curve if r["tokens"] <= budget]
    last = within[-1]
    best = max(within, key=lambda r: (r["stop"], -r["round"]))
    return {"test": last["test"], "tokens": last["tokens"], "round": last["round"],
            "selected_test": best["test"]}


def _indices(n_seeds: int, n: int, seed: int) -> np.ndarray:
    """`n` resamples of seed indices with replacement, shape (n, n_seeds)."""
    return np.random.default_rng(seed).integers(0, n_seeds, size=(n, n_seeds))


def _weights(n_seeds: int, n: int, seed: int) -> np.ndarray:
    """The resamples of `_indices` as weights (how often each seed is drawn / n_seeds), so that
    `weights @ per_seed_values` is every resample's mean at once."""
    idx = _indices(n_seeds, n, seed)
    counts = np.zeros((n, n_seeds))
    np.add.at(counts, (np.repeat(np.arange(n), n_seeds), idx.ravel()), 1.0)
    return counts / n_seeds


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(values, stat: Callable = np.mean, n: int = N_BOOT, level: float = LEVEL,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` over `values` (one per seed); deterministic given `seed`.

    `stat` is a numpy reduction taking `axis=` (np.mean, np.median): it is applied to all resamples at once.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_ci needs a non-empty 1-D list of values, got shape {values.shape}")
    if len(values) == 1:
        return float(values[0]), float(values[0])
    samples = stat(values[_indices(len(values), n, seed)], axis=1)
    return _percentiles(samples, level)


# -- per-seed figures -----------------------------------------------------------------------------------

def _point(run: dict, budget: int) -> dict:
    """A run's figures at `budget` (see `efficiency.at_budget`)."""

    return at_budget(run["rounds"], budget)


def arms(result: dict) -> list[str]:
    """The strategies that ran, known arms in their fixed order, then any others by name."""
    present = {r["strategy"] for r in result["runs"]}
    return [a for a in ARMS if a in present] + sorted(present - set(ARMS))


def _by_seed(result: dict, arm: str) -> dict[int, dict]:
    return {r["seed"]: r for r in result["runs"] if r["strategy"] == arm}


def common_seeds(result: dict, *names: str) -> list[int]:
    """The seeds every one of the arms `names` ran (empty if any arm is missing)."""
    seeds = [set(_by_seed(result, a)) for a in names]
    return sorted(set.intersection(*seeds)) if seeds else []


def _tests(result: dict, arm: str, seeds: list[int], budget: int) -> np.ndarray:
    runs = _by_seed(result, arm)
    return np.array([_point(runs[s], budget)["test"] for s in seeds], dtype=float)


# -- paired differences ---------------------------------------------------------------------------------

def paired(result: dict, a: str, b: str) -> dict[str, dict]:
    """Per budget, the per-seed differences a − b over the seeds both arms ran, their mean and 95% CI.

    Empty if either arm did not run."""
    seeds = common_seeds(result, a, b)
    out = {}
    if not seeds:
        return out
    for budget in result["budgets"]:
        diffs = _tests(result, a, seeds, budget) - _tests(result, b, seeds, budget)
        low, high = bootstrap_ci(diffs)
        out[str(budget)] = {"mean": float(diffs.mean()), "low": low, "high": high, "seeds": len(seeds),
                            "diffs": [float(d) for d in diffs]}
    return out


# -- token ratio ----------------------------------------------------------------------------------------

def _grid(budgets: list[int]) -> np.ndarray:
    top, step = max(budgets), max(1, min(budgets) // 16)
    return np.array(sorted(set(range(0, top + 1, step)) | {top}))


def _ratios(curves: np.ndarray, targets: np.ndarray, spent: np.ndarray, grid: np.ndarray) -> tuple:
    """Per row: the first grid tokens at which `curves` reaches `targets`, over `spent`; a row that never
    reaches it gets the lower bound max(grid) / spent. Returns (ratios, tokens needed, reached)."""
    hits = curves >= targets[:, None] - TINY
    reached = hits.any(axis=1)
    need = np.where(reached, grid[hits.argmax(axis=1)], grid[-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return need / spent, need, reached


def token_ratio(result: dict, n: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict:
    """Tokens random needs (seed-mean curve, on a grid) to reach targeted's final seed-mean metric, over
    the tokens targeted spent at the largest budget; with a paired bootstrap CI over seeds.

    If random never gets there within the largest budget, `value` is the lower bound
    max_budget / targeted_tokens and `reached` is False (resamples that never get there count the same
    way). Empty if either arm is missing; `value` None if targeted spent no tokens."""
    seeds = common_seeds(result, "random", "targeted")
    if not seeds:
        return {}
    budgets, grid = result["budgets"], _grid(result["budgets"])
    top = max(budgets)
    rand, targ = _by_seed(result, "random"), _by_seed(result, "targeted")
    curves = np.array([[_point(rand[s], int(t))["test"] for t in grid] for s in seeds])  # (seeds, grid)
    final = np.array([_point(targ[s], top)["test"] for s in seeds])
    spent = np.array([_point(targ[s], top)["tokens"] for s in seeds], dtype=float)
    ratio, need, reached = _ratios(curves.mean(0)[None], final.mean(keepdims=True), spent.mean(keepdims=True),
                                   grid)
    out = {"value": None, "low": None, "high": None, "reached": bool(reached[0]),
           "random_tokens": int(need[0]) if reached[0] else None, "targeted_tokens": float(spent.mean()),
           "seeds": len(seeds)}
    if spent.mean() <= 0:
        log.warning("token ratio: targeted spent no tokens at %d, no ratio", top)
        return out
    w = _weights(len(seeds), n, seed)
    boot, _, _ = _ratios(w @ curves, w @ final, w @ spent, grid)
    low, high = _percentiles(boot[np.isfinite(boot)], level)  # resampled seeds that spent nothing: no ratio
    out.update({"value": float(ratio[0]), "low": low, "high": high})
    return out


# -- gain recovery --------------------------------------------------------------------------------------

def gain_recovery(result: dict, n: int = N_BOOT, level: float = LEVEL, seed: int = 0) -> dict[str, dict]:
    """Per budget, (targeted − none) / (real − none) on seed means: the share of the gain from real
    labelled data that generated data recovers. Paired bootstrap CI over seeds (resamples whose
    denominator is ~0 are left out); all None where real − none is ~0. Empty if an arm is missing."""
    seeds = common_seeds(result, "targeted", "none", "real")
    out = {}
    if not seeds:
        return out
    w = _weights(len(seeds), n, seed)
    for budget in result["budgets"]:
        t, z, r = (_tests(result, arm, seeds, budget) for arm in ("targeted", "none", "real"))
        den = r.mean() - z.mean()
        if abs(den) < TINY:
            out[str(budget)] = {"value": None, "low": None, "high": None}
            continue
        value = (t.mean() - z.mean()) / den
        bden = w @ r - w @ z
        ok = np.abs(bden) >= TINY
        boot = (w @ t - w @ z)[ok] / bden[ok]
        low, high = _percentiles(boot, level) if len(boot) else (None, None)
        out[str(budget)] = {"value": float(value), "low": low, "high": high}
    return out


# -- summary --------------------------------------------------------------------------------------------

def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(result: dict) -> dict[str, dict]:
    """Mean ± std over seeds per arm and budget (the test metric, the kept student's, tokens spent)."""
    out = {}
    for arm in arms(result):
        runs = [r for r in result["runs"] if r["strategy"] == arm]
        out[arm] = {}
        for b in result["budgets"]:
            points = [_point(r, b) for r in runs]
            mean, std = _mean_std([p["test"] for p in points])
            smean, sstd = _mean_std([p["selected_test"] for p in points])
            out[arm][str(b)] = {"mean": mean, "std": std, "selected_mean": smean, "selected_std": sstd,
                                "tokens_mean": statistics.fmean(p["tokens"] for p in points),
                                "seeds": len(points)}
    return out


def verdicts(result: dict, pairs: dict, ratio: dict, recovery: dict) -> dict[str, bool | None]:
    """The benchmark's claims, each True/False, or None when the arms it needs did not run."""
    top = str(max(result["budgets"]))

    def above(key: str) -> bool | None:
        return pairs[key][top]["low"] > 0 if key in pairs else None

    at_top = recovery.get(top, {}).get("value")
    return {"targeted_half_tokens": ratio["value"] >= 2 if ratio.get("value") is not None else None,
            "targeted_above_random_at_max": above("targeted-random"),
            "gain_recovery_ge_0_8": at_top >= 0.8 if at_top is not None else None,
            "crossval_above_all_labels": above("crossval-all_labels")}


def summary(result: dict) -> dict:
    """Everything the benchmark reports, JSON-serialisable: `table` (per arm and budget), `paired`
    ("a-b" -> per budget), `token_ratio`, `gain_recovery`, `verdicts`."""
    pairs = {f"{a}-{b}": paired(result, a, b) for a, b in PAIRS}
    pairs = {k: v for k, v in pairs.items() if v}
    ratio, recovery = token_ratio(result), gain_recovery(result)
    return {"table": table(result), "paired": pairs, "token_ratio": ratio, "gain_recovery": recovery,
            "verdicts": verdicts(result, pairs, ratio, recovery),
            "seeds": len({r["seed"] for r in result["runs"]})}


# -- text -----------------------------------------------------------------------------------------------

def _signed(x: float) -> str:
    return f"{x:+.4f}".replace("-", "\u2212")


def _ratio_line(ratio: dict) -> str:
    if not ratio:
        return "token ratio: n/a (random or targeted did not run)"
    if ratio["value"] is None:
        return "token ratio: n/a (targeted spent no tokens)"
    head = "token ratio (random tokens to reach targeted's final / targeted's tokens): "
    ci = f"[{ratio['low']:.2f}, {ratio['high']:.2f}] (n={ratio['seeds']})"
    if ratio["reached"]:
        return head + f"{ratio['value']:.2f} {ci}: random {ratio['random_tokens']}, " \
                      f"targeted {ratio['targeted_tokens']:.0f}"
    return head + f"\u2265 {ratio['value']:.2f} {ci}: random never reached it within the largest budget"


def table_lines(result: dict, stats: dict | None = None) -> list[str]:
    """The lines the CLI prints; `stats` is `summary(result)` when already computed."""
    stats = summary(result) if stats is None else stats
    budgets = [str(b) for b in result["budgets"]]
    lines = [f"{result.get('config', result['task'])}: test {result['metric']}, mean \u00b1 std over seeds",
             f"{'arm':<12}" + "".join(f"{b:>19}" for b in budgets) + f"{'n':>5}"]
    for arm, row in stats["table"].items():
        cells = "".join(f"{row[b]['mean']:>10.4f} \u00b1 {row[b]['std']:.4f}" for b in budgets)
        lines.append(f"{arm:<12}{cells}{row[budgets[-1]]['seeds']:>5}")
    lines.append("paired differences, 95% bootstrap CI over seeds:")
    for key, by_budget in stats["paired"].items():
        a, b = key.split("-", 1)
        for budget, d in by_budget.items():
            lines.append(f"{a} \u2212 {b} @{budget}: {_signed(d['mean'])} "
                         f"[{_signed(d['low'])}, {_signed(d['high'])}] (n={d['seeds']})")
    lines.append(_ratio_line(stats["token_ratio"]))
    for budget, g in stats["gain_recovery"].items():
        text = "n/a (real \u2212 none is 0)" if g["value"] is None else f"{g['value']:.2f}"
        if g["low"] is not None:
            text += f" [{g['low']:.2f}, {g['high']:.2f}]"
        lines.append(f"gain recovery (targeted \u2212 none) / (real \u2212 none) @{budget}: {text}")
    words = {True: "yes", False: "no", None: "n/a"}
    lines.append("verdicts: " + ", ".join(f"{k}: {words[v]}" for k, v in stats["verdicts"].items()))
    return lines


# -- plot -----------------------------------------------------------------------------------------------

def _curve_panel(ax, result: dict) -> None:
    """Metric vs tokens per arm: seed mean and a 95% bootstrap band."""
    xs = [0] + list(result["budgets"])
    for i, arm in enumerate(arms(result)):
        runs = [r for r in result["runs"] if r["strategy"] == arm]
        points = [[_point(r, x)["test"] for r in runs] for x in xs]
        mean = [statistics.fmean(p) for p in points]
        lows, highs = zip(*(bootstrap_ci(p) for p in points))
        colour = COLOURS.get(arm, f"C{i % 10}")
        ax.plot(xs, mean, marker="o", color=colour, label=f"{arm} (n={len(runs)})")
        ax.fill_between(xs, lows, highs, color=colour, alpha=0.15)
    ax.set_xlabel("teacher tokens spent (budget)")
    ax.set_ylabel(f"test {result['metric']}")
    ax.set_title("seed mean, 95% bootstrap CI")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)


def _diff_panel(ax, result: dict) -> None:
    """targeted − each other arm per budget, with 95% bootstrap CI error bars."""
    budgets = [str(b) for b in result["budgets"]]
    others = [a for a in arms(result) if a != "targeted"]
    diffs = {arm: paired(result, "targeted", arm) for arm in others}
    diffs = {arm: d for arm, d in diffs.items() if d}
    width = 0.8 / max(1, len(diffs))
    for i, (arm, d) in enumerate(diffs.items()):
        xs = [j - 0.4 + width * (i + 0.5) for j in range(len(budgets))]
        mean = [d[b]["mean"] for b in budgets]
        err = [[m - d[b]["low"] for m, b in zip(mean, budgets)],
               [d[b]["high"] - m for m, b in zip(mean, budgets)]]
        ax.errorbar(xs, mean, yerr=err, fmt="o", capsize=3, color=COLOURS.get(arm, f"C{i % 10}"),
                    label=f"targeted \u2212 {arm}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(budgets)), budgets)
    ax.set_xlabel("budget (tokens)")
    ax.set_ylabel(f"paired difference in test {result['metric']}")
    ax.set_title("targeted \u2212 other arm, per seed, 95% CI")
    if diffs:
        ax.legend(fontsize="small")
    ax.grid(alpha=0.3, axis="y")


def plot(result: dict, path: Path) -> None:
    """Two panels: the arms' curves with CI bands, and targeted's paired differences; written to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    _curve_panel(left, result)
    _diff_panel(right, result)
    seeds = len({r["seed"] for r in result["runs"]})
    fig.suptitle(f"{result.get('config', result['task'])}: test {result['metric']} vs teacher tokens "
                 f"({seeds} seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
