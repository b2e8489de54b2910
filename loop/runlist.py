"""`loop runs`: the runs a store holds, one line each, so the ids `--resume` needs are one command away."""

from __future__ import annotations

import time

from loop.store import RunStore


def best_round(rounds: list[dict], metric: str) -> dict | None:
    """The round with the best stopping-split metric (the earliest on a tie), as the loop keeps it."""
    return max(rounds, key=lambda r: (r["metrics"].get(f"stop_{metric}", float("-inf")), -r["round"]),
               default=None)


def run_rows(store: RunStore) -> list[dict]:
    """Per run, oldest first: id, when, status, task and strategy, finished rounds, the best round's stopping
    and test metric (by the stopping split, as the loop keeps it), tokens spent and accepted samples."""
    out = []
    for run_id, created, status in store.db.execute("SELECT id, created, status FROM runs ORDER BY created"):
        info = store.run_info(run_id)
        cfg = info["config"]
        metric = cfg.get("loop", {}).get("metric", "macro_f1")
        rounds = store.round_rows(run_id)
        best = best_round(rounds, metric)
        spent = store.spent(run_id)
        out.append({"run": run_id, "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created)),
                    "status": status, "task": cfg.get("task", {}).get("name", ""),
                    "strategy": cfg.get("generation", {}).get("strategy", ""),
                    "rounds": max((r["round"] for r in rounds), default=-1), "metric": metric,
                    "best_round": best["round"] if best else None,
                    "best_stop": best["metrics"].get(f"stop_{metric}") if best else None,
                    "best_test": best["metrics"].get(f"test_{metric}") if best else None,
                    "tokens": spent.tokens, "accepted": spent.samples})
    return out


def table_lines(rows: list[dict]) -> list[str]:
    width = max([3] + [len(r["run"]) for r in rows])
    head = f"{'run':{width}} {'created':16} {'status':11} {'task':9} {'strategy':9} {'rounds':>6} " \
           f"{'best':>4} {'stop':>7} {'test':>7} {'tokens':>8} {'accepted':>8}"
    lines = [head]
    for r in rows:
        fig = [f"{v:7.4f}" if v is not None else f"{'-':>7}" for v in (r["best_stop"], r["best_test"])]
        best = "-" if r["best_round"] is None else str(r["best_round"])
        lines.append(f"{r['run']:{width}} {r['created']:16} {str(r['status'])[:11]:11} {r['task'][:9]:9} "
                     f"{r['strategy'][:9]:9} {max(r['rounds'], 0):>6} {best:>4} {fig[0]} {fig[1]} "
                     f"{r['tokens']:>8} {r['accepted']:>8}")
    return lines
