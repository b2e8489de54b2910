"""What a reliability trial left behind, read back and compared with an uninterrupted run; the summary and
the printed report of `loop bench reliability`."""

from __future__ import annotations

import collections
import dataclasses
import sqlite3
from pathlib import Path

POINTS = ("teacher", "stored", "parse", "train", "mlflow", "random")
POINT_NAMES = {"teacher": "waiting for the teacher", "stored": "right after a response is stored",
               "parse": "while parsing", "train": "while training", "mlflow": "while logging to MLflow",
               "random": "after a random delay"}

@dataclasses.dataclass
class Outcome:
    status: str
    rounds: list
    accepted: list
    spent: tuple
    responses: int
    paid_twice: int
    mlflow_parents: int


MISSING = Outcome(status="missing", rounds=[], accepted=[], spent=(0, 0.0, 0), responses=0, paid_twice=0,
                  mlflow_parents=0)


def read_outcome(run_dir: Path, tracking_uri: str, experiment: str) -> Outcome:
    """What a run's store (read-only) and MLflow hold; MISSING if it was killed before its store existed."""
    path = run_dir.parent / "store.sqlite"
    if not path.is_file():
        return MISSING
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        if db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name='ledger'").fetchone()[0] == 0:
            return MISSING
        rid = run_dir.name
        status = db.execute("SELECT status FROM runs WHERE id=?", (rid,)).fetchone()
        rounds = [r[0] for r in db.execute("SELECT round FROM rounds WHERE run_id=? AND status='done' "
                                           "ORDER BY round", (rid,))]
        accepted = sorted(r[0] for r in db.execute("SELECT text FROM candidates WHERE run_id=? AND "
                                                   "verdict='accepted'", (rid,)))
        spent = db.execute("SELECT COALESCE(SUM(tokens),0), ROUND(COALESCE(SUM(money),0), 9), "
                           "COALESCE(SUM(samples),0) FROM ledger WHERE run_id=?", (rid,)).fetchone()
        paid = [r[0] for r in db.execute("SELECT COUNT(*) FROM ledger WHERE run_id=? "
                                         "AND event LIKE 'response:%' GROUP BY event", (rid,))]
    finally:
        db.close()
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    parents = client.search_runs([exp.experiment_id], f"tags.run_id = '{run_dir.name}'") if exp else []
    return Outcome(status=status[0] if status else "missing", rounds=rounds, accepted=accepted,
                   spent=tuple(spent), responses=len(paid), paid_twice=sum(n - 1 for n in paid),
                   mlflow_parents=len(parents))


def compare(got: Outcome, clean: Outcome, caps: dict) -> dict:
    want, have = collections.Counter(clean.accepted), collections.Counter(got.accepted)
    return {"finished": got.status == "done" and got.rounds == clean.rounds,
            "paid_twice": got.paid_twice, "lost": sum((want - have).values()),
            "duplicated": sum((have - want).values()), "ledger_equal": got.spent == clean.spent,
            "overshoot_tokens": max(0, got.spent[0] - caps["tokens"]),
            "overshoot_samples": max(0, got.spent[2] - caps["samples"]),
            "mlflow_parents": got.mlflow_parents}


def summarise(rows: list[dict]) -> dict:
    return {"trials": len(rows),
            "killed": sum("killed" in r["ends"] for r in rows),
            "kills": sum(r["ends"].count("killed") for r in rows),
            "survived": sum(r["finished"] and r["ledger_equal"] and r["mlflow_parents"] == 1 for r in rows),
            "paid_twice": sum(r["paid_twice"] for r in rows),
            "lost": sum(r["lost"] for r in rows), "duplicated": sum(r["duplicated"] for r in rows),
            "overshoot": sum(r["overshoot_tokens"] + r["overshoot_samples"] for r in rows),
            "by_point": {p: sum(r["point"] == p for r in rows) for p in POINTS}}



def report(result: dict) -> list[str]:
    """The figures, as printed and as in the README."""
    from loop.bench.programs import report_lines

    kinds = {k: (sum(r["handled"] for r in v), len(v)) for k, v in result["bad_inputs"].items()}
    handled, tried = sum(h for h, _ in kinds.values()), sum(n for _, n in kinds.values())
    corpora = [f"bad inputs handled: {handled} / {tried} ("
               + ", ".join(f"{k} {h}/{n}" for k, (h, n) in kinds.items())
               + ")"] + report_lines(result.get("hostile_programs", {}))
    if "summary" not in result:
        return corpora
    s, clean = result["summary"], result["clean"]
    return [
        f"trials survived: {s['survived']} / {s['trials']} (each killed at least once: {s['killed']}; "
        f"{s['kills']} SIGKILLs in all: "
        + ", ".join(f"{POINT_NAMES[p]} {n}" for p, n in s["by_point"].items()) + ")",
        f"uninterrupted run: {clean['responses']} responses, {clean['spent_tokens']} / "
        f"{clean['caps']['tokens']} tokens, {clean['accepted']} samples accepted, {clean['seconds']:.1f}s",
        f"responses paid twice: {s['paid_twice']}",
        f"samples lost: {s['lost']}, duplicated: {s['duplicated']}",
        f"budget overshoot: {s['overshoot']}",
    ] + corpora
