"""`loop report`: one self-contained HTML page per run (plots embedded, nothing fetched), readable without
MLflow: config and cost, the metric against tokens beside the same config's `none` / `random` runs,
per-class F1 at baseline and best round, the confusion matrix before and after, and per round the
neighbourhoods it targeted, the samples it bought and the ones it rejected."""

from __future__ import annotations

import base64
import html
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from loop.errors import RunStateError
from loop.plots import confusion_png, curves_png, most_confused
from loop.runlist import best_round

SAMPLES_PER_HOOD = 5  # accepted samples shown under each neighbourhood
REJECTED_PER_REASON = 6  # rejected samples shown per reason
CHANGED = 0.02  # a class whose F1 moved by more than this was fixed (or hurt)

STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 7px;
vertical-align:top;text-align:left}th{background:#f4f4f4}.up{color:#137333}.down{color:#b3261e}
.muted{color:#777}.kpi{display:inline-block;margin:0 1.6em .6em 0}.kpi b{font-size:1.4em;display:block}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-height:18em;overflow:auto}details{margin:.3em 0}
summary{cursor:pointer}img{max-width:100%}.pair{display:flex;gap:1em;flex-wrap:wrap}.pair>div{flex:1}"""


def _e(value) -> str:
    return html.escape(str(value))


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.4f}"
    text = str(value)
    return f"<pre>{_e(text[:3000])}</pre>" if "\n" in text else _e(text[:600])


def table(rows: list[dict], cols: list[str] | None = None) -> str:
    """An HTML table of `rows` (the columns of the first row unless given)."""
    if not rows:
        return '<p class="muted">none</p>'
    cols = cols or list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kpis(pairs) -> str:
    """Headline figures, each a big value over its name."""
    return "<div>" + "".join(f"<span class='kpi'><b>{_cell(v) if v is not None else '-'}</b>{_e(k)}</span>"
                             for k, v in pairs) + "</div>"


def _png(draw) -> str:
    """An <img> of what `draw(path)` writes, embedded."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "figure.png"
        draw(path)
        data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _comparable(cfg: dict) -> str:
    """A config with what differs between arms of one comparison (strategy, name, folders) left out."""
    rest = {k: v for k, v in cfg.items() if k != "run"}
    rest["generation"] = {k: v for k, v in cfg.get("generation", {}).items() if k != "strategy"}
    return json.dumps(rest, sort_keys=True)


def _series(rounds: list[dict], metric: str) -> tuple[list[int], list[float]]:
    done = [r["metrics"] for r in rounds if f"test_{metric}" in r["metrics"]]
    return [m.get("tokens_spent_total", 0) for m in done], [m[f"test_{metric}"] for m in done]


def _curve(store, run_id: str, cfg: dict, rounds: list[dict], metric: str) -> str:
    """The metric per round against tokens, with the finished `none` / `random` runs of the same config."""
    tokens, values = _series(rounds, metric)
    series = [{"name": f"{run_id} ({cfg['generation']['strategy']})", "tokens": tokens, "values": values,
               "style": "o-"}]
    key, span = _comparable(cfg), max(tokens + [1])
    for other in store.run_ids():
        info = store.run_info(other)
        strategy = info["config"].get("generation", {}).get("strategy")
        if other == run_id or strategy not in ("none", "random") or _comparable(info["config"]) != key:
            continue
        t, v = _series(store.round_rows(other), metric)
        if strategy == "none" and v:  # no tokens to spend: its best student, across the chart
            t, v = [0, span], [max(v)] * 2
        if v:
            series.append({"name": f"{other} ({strategy})", "tokens": t, "values": v,
                           "style": "--" if strategy == "none" else "s--"})
    baseline = values[0] if values else None
    others = len(series) - 1
    note = (f"beside {others} run(s) of the same config with another strategy" if others else
            "no `none` or `random` run of the same config is in this store to compare with")
    return f"<p class='muted'>{note}</p>" + _png(lambda p: curves_png(series, baseline, metric, p))


def _compared(rounds: list[dict], best: dict) -> tuple[dict, str]:
    """The round set against the baseline: the best, or the last where the baseline stayed the best."""
    if best is not rounds[0] or len(rounds) == 1:
        return best, f"best round ({best['round']})"
    return rounds[-1], f"last round ({rounds[-1]['round']}; the baseline stayed the best)"


def _per_class(rounds: list[dict], best: dict) -> str:
    """Test F1 per class at the baseline and at the best round: the classes the loop fixed, those it hurt."""
    base = rounds[0]["metrics"]
    labels = [k[len("test_f1_"):] for k in base if k.startswith("test_f1_")]
    now_round, name = _compared(rounds, best)
    if not labels or now_round is rounds[0]:
        return '<p class="muted">no per-class scores to compare (no round after the baseline, or not a ' \
               'classification task)</p>'
    rows = []
    for lab in labels:
        then, now = base[f"test_f1_{lab}"], now_round["metrics"].get(f"test_f1_{lab}", float("nan"))
        rows.append({"label": lab, "then": then, "now": now, "change": now - then})
    rows.sort(key=lambda r: r["change"])
    fixed = sum(r["change"] > CHANGED for r in rows)
    hurt = sum(r["change"] < -CHANGED for r in rows)
    tone = {1: "up", -1: "down", 0: ""}
    body = "".join(f"<tr><td>{_e(r['label'])}</td><td>{r['then']:.3f}</td><td>{r['now']:.3f}</td><td class="
                   f"'{tone[int(np.sign(r['change']))]}'>{r['change']:+.3f}</td></tr>"
                   for r in reversed(rows))
    return (f"<p>{fixed} class(es) up by more than {CHANGED}, {hurt} down by more than {CHANGED}, of "
            f"{len(rows)}: test split, baseline vs {_e(name)}.</p><details open><summary>every class"
            f"</summary><table><thead><tr><th>label</th><th>baseline F1</th>"
            f"<th>F1 at round {now_round['round']}</th>"
            f"<th>change</th></tr></thead><tbody>{body}</tbody></table></details>")


def _confusions(rounds: list[dict], best: dict) -> str:
    now_round, name = _compared(rounds, best)
    first, last = rounds[0].get("analysis", {}), now_round.get("analysis", {})
    if "confusion_test" not in first or "confusion_test" not in last:
        return '<p class="muted">no confusion counts stored for this run</p>'
    labels = first["labels"]
    before, after = np.array(first["confusion_test"]), np.array(last["confusion_test"])
    keep = most_confused(before + after)
    pics = [_png(lambda p, m=m, t=t: confusion_png(m, labels, p, t, keep=keep))
            for m, t in ((before, "baseline (round 0)"), (after, name))]
    return f"<p>Test split, rows gold, columns predicted.</p><div class='pair'><div>{pics[0]}</div>" \
           f"<div>{pics[1]}</div></div>"


def _hood_details(row: dict, accepted: list[dict]) -> str:
    exemplars = [x for x in row.get("exemplars", "").split(" | ") if x]
    shown = "".join(f"<li>[{_e(c['label'])}] {_e(c['text'][:400])}</li>" for c in accepted[:SAMPLES_PER_HOOD])
    more = f"<li class='muted'>and {len(accepted) - SAMPLES_PER_HOOD} more</li>" \
        if len(accepted) > SAMPLES_PER_HOOD else ""
    return (f"<details><summary>neighbourhood {_e(row['neighbourhood'])}: {_e(row.get('confusion') or '-')}"
            f" &mdash; {len(accepted)} accepted</summary><p>exemplars shown to the teacher:</p><ul>"
            + "".join(f"<li>{_e(x[:400])}</li>" for x in exemplars)
            + f"</ul><p>accepted samples:</p><ul>{shown or '<li class=muted>none</li>'}{more}</ul></details>")


def _round_section(rnd: dict, nxt: dict | None, cands: list[dict], metric: str) -> str:
    m, a = rnd["metrics"], rnd.get("analysis", {})
    fixed = {r["neighbourhood"]: r for r in (nxt or {}).get("analysis", {}).get("followup", [])}
    hoods = [{**h, "fixed (error rate then -> next round)":
              f"{fixed[h['neighbourhood']]['error_rate_then']:.2f} -> "
              f"{fixed[h['neighbourhood']]['error_rate_now']:.2f}" if h["neighbourhood"] in fixed else ""}
             for h in a.get("neighbourhoods", [])]
    cols = ["neighbourhood", "confusion", "error_mass", "hard_cases", "errors", "requests", "prompt",
            "candidates", "accepted", "fixed (error rate then -> next round)"]
    accepted = defaultdict(list)
    for c in cands:
        if c["verdict"] == "accepted":
            accepted[c["meta"].get("neighbourhood")].append(c)
    kpis = [("stop " + metric, m.get(f"stop_{metric}")), ("test " + metric, m.get(f"test_{metric}")),
            ("tokens", m.get("tokens_round")), ("requests", m.get("requests")),
            ("candidates", m.get("candidates")), ("accepted", m.get("accepted")),
            ("tokens / accepted", m.get("tokens_per_accepted"))]
    parts = [f"<h3>Round {rnd['round']}</h3>{_kpis(kpis)}"]
    if hoods:
        parts.append(table(hoods, [c for c in cols if any(c in h for h in hoods)]))
        parts.extend(_hood_details(h, accepted.get(h["neighbourhood"], [])) for h in hoods)
    elif accepted:
        why = "random strategy" if "neighbourhoods" in a else "no neighbourhood table stored for this round"
        parts.append(f"<p>{sum(map(len, accepted.values()))} samples accepted ({why}).</p>")
    parts.append(_rejected(cands))
    for name, rows in a.get("tables", {}).items():
        parts.append(f"<details><summary>{_e(Path(name).stem.replace('_', ' '))} ({len(rows)})</summary>"
                     f"{table(rows[:30])}</details>")
    return "".join(parts)


def _rejected(cands: list[dict]) -> str:
    """A gallery of the round's rejected samples, by reason."""
    by = defaultdict(list)
    for c in cands:
        if c["verdict"] == "rejected":
            by[c["reason"]].append(c)
    if not by:
        return '<p class="muted">nothing rejected</p>'
    out = ["<p>rejected, by reason:</p>"]
    for reason, rows in sorted(by.items(), key=lambda kv: -len(kv[1])):
        items = "".join(f"<li>[{_e(c['label'])}] {_cell(c['text'][:600])}</li>"
                        for c in rows[:REJECTED_PER_REASON])
        out.append(f"<details><summary>{_e(reason)} ({len(rows)})</summary><ul>{items}</ul></details>")
    return "".join(out)


def _header(store, run_id: str, info: dict, rounds: list[dict], best: dict | None, metric: str) -> str:
    cfg, spent = info["config"], store.spent(run_id)
    cap = cfg.get("budget", {}).get("tokens")
    base = rounds[0]["metrics"].get(f"test_{metric}") if rounds else None
    kpis = [("status", info["status"]), ("rounds finished", max(len(rounds) - 1, 0)),
            (f"baseline test {metric}", base),
            (f"best test {metric} (round {best['round']})" if best else "best", best and
             best["metrics"].get(f"test_{metric}")),
            ("tokens spent" + (f" of {cap}" if cap else ""), spent.tokens), ("money spent", spent.money),
            ("samples accepted", spent.samples)]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info["created"]))
    return (f"<h1>loop run {_e(run_id)}</h1><p class='muted'>task {_e(cfg['task']['name'])}, strategy "
            f"{_e(cfg['generation']['strategy'])}, teacher {_e(cfg['teacher'].get('model'))}, started {when}"
            f"</p>{_kpis(kpis)}<details><summary>config</summary>"
            f"<pre>{_e(json.dumps(cfg, indent=1))}</pre></details>")


def build(store, run_id: str) -> str:
    """The report of `run_id` as one HTML page."""
    info = store.run_info(run_id)
    if info is None:
        raise RunStateError(f"no run {run_id!r} in {store.path} (`loop runs` lists them)")
    cfg = info["config"]
    metric = cfg.get("loop", {}).get("metric", "macro_f1")
    rounds = store.round_rows(run_id, analysis=True)
    best = best_round(rounds, metric)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>loop report {_e(run_id)}</title>"
             f"<style>{STYLE}</style></head><body>", _header(store, run_id, info, rounds, best, metric)]
    if not rounds:
        parts.append("<p>No round has finished yet.</p></body></html>")
        return "".join(parts)
    parts += [f"<h2>Test {_e(metric)} against tokens spent</h2>", _curve(store, run_id, cfg, rounds, metric),
              "<h2>Per-class F1: baseline vs best round</h2>", _per_class(rounds, best),
              "<h2>Confusion matrix before and after</h2>", _confusions(rounds, best), "<h2>Rounds</h2>"]
    cands = defaultdict(list)
    for c in store.candidates(run_id):
        cands[c["round"]].append(c)
    for i, rnd in enumerate(rounds[1:], start=1):
        nxt = rounds[i + 1] if i + 1 < len(rounds) else None
        parts.append(_round_section(rnd, nxt, cands[rnd["round"]], metric))
    if len(rounds) == 1:
        parts.append('<p class="muted">only the baseline round has finished</p>')
    parts.append("</body></html>")
    return "".join(parts)


def write(store, run_id: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build(store, run_id), encoding="utf-8")
    return path
