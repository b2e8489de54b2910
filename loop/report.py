"""What each round reports: flat metrics, and the error-analysis artifacts in MLflow."""

from __future__ import annotations

from collections import Counter

import numpy as np

from loop.filters import rejection_counts
from loop.plots import confusion_matrix
from loop.records import Candidate


def round_metrics(mined, gen, cands: list[Candidate], budget, accepted, timer) -> dict:
    """Counts, tokens and seconds of one round, as flat MLflow metrics."""
    pairs = gen.pairs
    m = {"errors": mined.errors, "low_confidence": mined.low_confidence, "neighbourhoods": len(mined.hoods),
         "requests": len(pairs), "requests_skipped_budget": gen.skipped, "cache_hits": gen.cache_hits,
         "prompt_tokens": sum(r.prompt_tokens for _, r in pairs),
         "completion_tokens": sum(r.completion_tokens for _, r in pairs),
         "candidates": len(cands), "accepted": sum(c.verdict == "accepted" for c in cands),
         "tokens_spent_total": budget.spent.tokens, "money_spent_total": budget.spent.money,
         "accepted_total": len(accepted)}
    m["tokens_round"] = gen.paid_tokens  # prompt/completion_tokens above include cached (free) replies
    if gen.agreement is not None:
        m["agreement_requests"] = len(gen.agreement.pairs)
        m["agreement_tokens"] = gen.agreement.paid_tokens
        m["tokens_round"] += gen.agreement.paid_tokens
    for kind, n in Counter(c.kind for c in cands if c.verdict == "accepted").items():
        m[f"accepted_{kind}"] = n  # e.g. revised programs (self_revise) vs new problems (targeted)
    m["truncated_replies"] = sum(r.truncated for _, r in pairs)  # cut off at teacher.max_tokens
    m["parse_rate"] = 1 - sum(c.reason == "parse" for c in cands) / len(pairs) if pairs else 0.0
    m["acceptance_rate"] = m["accepted"] / m["candidates"] if cands else 0.0
    # what a useful sample cost, and how much of the round came back as copies of what the student has
    if m["accepted"]:
        m["tokens_per_accepted"] = m["tokens_round"] / m["accepted"]
    copies = sum(c.reason in ("duplicate", "near_duplicate") for c in cands)
    m["duplicate_share"] = copies / len(cands) if cands else 0.0
    executed = [c for c in cands if "intent_agrees" in c.meta]
    if executed:  # code tasks: how often the tests agreed with the label the teacher aimed for
        m["intent_agreement"] = sum(c.meta["intent_agrees"] for c in executed) / len(executed)
        m["executed"] = len(executed)
    for reason, n in rejection_counts(cands).items():
        m[f"rejected_{reason}"] = n
    for stage, seconds in timer.seconds.items():
        m[f"seconds_{stage}"] = seconds
    return m


def _hood_rows(mined, planned, cands: list[Candidate]) -> list[dict]:
    made = Counter(c.meta.get("neighbourhood") for c in cands)
    kept = Counter(c.meta.get("neighbourhood") for c in cands if c.verdict == "accepted")
    rows = []
    for hood in mined.hoods:
        row = hood.row(planned.hoods.get(hood.id))
        row.update({"candidates": made.get(hood.id, 0), "accepted": kept.get(hood.id, 0)})
        rows.append(row)
    return rows


# why, where a check says
DETAILS = ("execution", "output_truncated", "error", "weak_tests", "mutants_caught")


def _candidate_rows(cands: list[Candidate], verdict: str) -> list[dict]:
    return [{"kind": c.kind, "label": c.label, "text": c.text, "reason": c.reason,
             "neighbourhood": c.meta.get("neighbourhood"), "request_id": c.request_id,
             **{k: c.meta[k] for k in DETAILS if k in c.meta}}
            for c in cands if c.verdict == verdict]


def hood_marks(mined) -> list[tuple[str, list[int]]]:
    """Per neighbourhood, its id and dominant confusion and the map rows of its cases."""
    row = {i: n for n, i in enumerate(mined.ids)}
    marks = []
    for hood in mined.hoods:
        rows = [row[c.example.id] for c in hood.cases if c.example.id in row]
        confusion = f" {hood.confusion[0]}->{hood.confusion[1]}" if hood.confusion else ""
        marks.append((f"#{hood.id}{confusion}", rows))
    return marks


def log_round_artifacts(tracker, task, splits, preds, mined, planned, cands: list[Candidate],
                        fixed: list[dict], new_vecs) -> dict:
    """Error-analysis tables and map, sample tables, the stop-split confusion matrix, per-class scores
    (`planned`: the round's plan, what it asked of each neighbourhood). Returns the round's analysis as the
    store keeps it for `loop report`: neighbourhoods, follow-up, confusion counts, task tables."""
    hoods = _hood_rows(mined, planned, cands)
    tracker.log_table(hoods, "error_analysis/neighbourhoods.json")
    tracker.log_table(fixed, "error_analysis/followup.json")
    if fixed:
        then = sum(r["error_rate_then"] * r["cases"] for r in fixed)
        now = sum(r["error_rate_now"] * r["cases"] for r in fixed)
        tracker.log_metric("followup_errors_fixed", (then - now) / then if then else 0.0)
    if mined.vectors is not None and len(mined.vectors):
        tracker.log_embedding_map(mined.vectors, mined.status, new_vecs, "error_analysis/map.png",
                                  hood_marks(mined))
    tracker.log_table([{"text": h.example.text, "gold": h.example.label, "predicted": h.predicted,
                        "confused_with": h.confused_with, "margin": round(h.margin, 4), "wrong": h.wrong}
                       for h in mined.hard], "error_analysis/hard_cases.json")
    tracker.log_table(_candidate_rows(cands, "accepted"), "samples/accepted.json")
    tracker.log_table(_candidate_rows(cands, "rejected"), "samples/rejected.json")
    analysis = {"neighbourhoods": hoods, "followup": fixed, "tables": {}}
    if task.confusion:
        for split in ("dev_stop", "test"):
            gold = [e.label for e in splits[split]]
            analysis[f"confusion_{split}"] = confusion_matrix(preds[split].labels, gold, task.labels).tolist()
        analysis["labels"] = list(task.labels)
        tracker.log_confusion(np.array(analysis["confusion_dev_stop"]), task.labels, "confusion_stop.png",
                              "stopping split: gold vs predicted")
    per_class = task.metric(preds["test"], splits["test"])
    if all(f"f1_{lab}" in per_class for lab in task.labels):
        tracker.log_table([{"label": lab, **{k: round(per_class[f"{k}_{lab}"], 4)
                                             for k in ("precision", "recall", "f1")}}
                           for lab in task.labels], "per_class_test.json")
    # task-specific tables (codegen: failing problems; faultloc: mislocalized functions)
    for name, rows in task.artifacts(preds, splits, mined).items():
        tracker.log_table(rows, name)
        analysis["tables"][name] = rows
    return analysis
