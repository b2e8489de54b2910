"""SQLite run store (WAL, append-only): requests, responses, candidates, verdicts, spending, rounds.

Each teacher response is committed before it is parsed, so nothing paid for is lost.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from loop.budget import Spend
from loop.errors import RunStateError
from loop.records import Candidate, Example, GenRequest, GenResult
from loop.redact import redact

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, created REAL, config TEXT, mlflow_run_id TEXT,
                                 status TEXT, base_dir TEXT);
CREATE TABLE IF NOT EXISTS rounds (run_id TEXT, round INTEGER, status TEXT, metrics TEXT,
                                   mlflow_run_id TEXT, finished REAL, analysis TEXT,
                                   PRIMARY KEY (run_id, round));
CREATE TABLE IF NOT EXISTS requests (id TEXT, run_id TEXT, round INTEGER, kind TEXT, messages TEXT,
                                     meta TEXT, max_tokens INTEGER, prompt_tokens INTEGER, created REAL,
                                     PRIMARY KEY (run_id, id));
CREATE TABLE IF NOT EXISTS skipped (run_id TEXT, round INTEGER, request_id TEXT,
                                    PRIMARY KEY (run_id, request_id));
CREATE TABLE IF NOT EXISTS responses (request_id TEXT, run_id TEXT, round INTEGER, text TEXT,
                                      prompt_tokens INTEGER, completion_tokens INTEGER,
                                      finish_reason TEXT, latency_s REAL, cost REAL, created REAL,
                                      choices TEXT, PRIMARY KEY (run_id, request_id));
CREATE TABLE IF NOT EXISTS candidates (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, round INTEGER,
                                       request_id TEXT, kind TEXT, text TEXT, label TEXT, verdict TEXT,
                                       reason TEXT, meta TEXT);
CREATE TABLE IF NOT EXISTS cache (key TEXT PRIMARY KEY, teacher TEXT, text TEXT, prompt_tokens INTEGER,
                                  completion_tokens INTEGER, finish_reason TEXT, created REAL, choices TEXT);
CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, round INTEGER,
                                   event TEXT, tokens INTEGER, money REAL, samples INTEGER, created REAL);
"""


def _plain(value):
    """JSON for what a task's table may hold beyond JSON's own types (numpy numbers)."""
    return value.item() if hasattr(value, "item") else str(value)


def _result(request_id: str, row: tuple) -> GenResult:
    """A stored reply (text, prompt and completion tokens, finish reason, its completions as JSON or NULL)."""
    return GenResult(request_id=request_id, text=row[0], prompt_tokens=row[1], completion_tokens=row[2],
                     finish_reason=row[3], latency_s=0.0, choices=json.loads(row[4]) if row[4] else None)


class RunStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None)
        try:
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise RunStateError(f"{path}: the run store fails its integrity check ({exc}); move it aside to "
                                "start afresh (its runs cannot be resumed)") from None

    def _migrate(self) -> None:
        """Stores written before runs kept their config's base folder, before a reply could hold several
        completions, or before rounds kept their error analysis, gain the column (NULL for old rows)."""
        for table, column in (("runs", "base_dir"), ("responses", "choices"), ("cache", "choices"),
                              ("rounds", "analysis")):
            if column not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(sql, rows)

    def start_run(self, run_id: str, config: dict) -> None:
        """Record a run and its resolved config (a run already recorded keeps its own)."""
        self._write("INSERT OR IGNORE INTO runs (id, created, config, mlflow_run_id, status) "
                    "VALUES (?,?,?,?,?)",
                    [(run_id, time.time(), redact(json.dumps(config)), None, "running")])

    def set_run(self, run_id: str, **fields) -> None:
        for key, value in fields.items():
            assert key in ("mlflow_run_id", "status", "base_dir")
            self._write(f"UPDATE runs SET {key}=? WHERE id=?", [(value, run_id)])

    def add_requests(self, run_id: str, rnd: int, reqs: list[GenRequest], prompt_tokens: list[int],
                     skipped: list[str] = ()) -> None:
        """Record, in one transaction, the requests about to be sent (with the completion tokens they may use,
        every completion counted, and the prompt tokens reserved) and those the budget skipped."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR IGNORE INTO requests VALUES (?,?,?,?,?,?,?,?,?)",
                                [(r.id, run_id, rnd, r.kind, json.dumps(r.messages), json.dumps(r.meta),
                                  r.max_tokens * r.n, pt, time.time()) for r, pt in zip(reqs, prompt_tokens)])
            self.db.executemany("INSERT OR IGNORE INTO skipped VALUES (?,?,?)",
                                [(run_id, rnd, rid) for rid in skipped])

    def decisions(self, run_id: str, request_ids: list[str]) -> tuple[set, set]:
        """Which of these requests an earlier (interrupted) attempt decided to send, and which it skipped."""
        sent, skipped = set(), set()
        for i in range(0, len(request_ids), 500):
            chunk = request_ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            sent |= {r[0] for r in self.db.execute(
                f"SELECT id FROM requests WHERE run_id=? AND id IN ({marks})", (run_id, *chunk))}
            skipped |= {r[0] for r in self.db.execute(
                f"SELECT request_id FROM skipped WHERE run_id=? AND request_id IN ({marks})",
                (run_id, *chunk))}
        return sent, skipped

    def own_response(self, run_id: str, request_id: str) -> GenResult | None:
        """This run's stored (already paid) response to a request, or None."""
        row = self.db.execute("SELECT text, prompt_tokens, completion_tokens, finish_reason, choices "
                              "FROM responses WHERE run_id=? AND request_id=?",
                              (run_id, request_id)).fetchone()
        return None if row is None else _result(request_id, row)

    def add_response(self, run_id: str, rnd: int, res: GenResult, cost: float, cache_key: str | None = None,
                     teacher: str = "", cached: bool = False) -> None:
        """Store a response, its spending (none if it came from the cache) and its cache entry, atomically."""
        tokens = 0 if cached else res.prompt_tokens + res.completion_tokens
        with self.db:
            self.db.execute("BEGIN")
            choices = json.dumps(res.choices) if res.choices is not None else None
            self.db.execute("INSERT OR IGNORE INTO responses (request_id, run_id, round, text, "
                            "prompt_tokens, completion_tokens, finish_reason, latency_s, cost, created, "
                            "choices) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                            (res.request_id, run_id, rnd, res.text, res.prompt_tokens, res.completion_tokens,
                             res.finish_reason, res.latency_s, 0.0 if cached else cost, time.time(), choices))
            self.db.execute("INSERT INTO ledger (run_id, round, event, tokens, money, samples, created) "
                            "VALUES (?,?,?,?,?,?,?)", (run_id, rnd, ("cached:" if cached else "response:")
                                                       + res.request_id, tokens, 0.0 if cached else cost, 0,
                                                       time.time()))
            if cache_key and not cached:
                self.db.execute("INSERT OR IGNORE INTO cache (key, teacher, text, prompt_tokens, "
                                "completion_tokens, finish_reason, created, choices) "
                                "VALUES (?,?,?,?,?,?,?,?)",
                                (cache_key, teacher, res.text, res.prompt_tokens, res.completion_tokens,
                                 res.finish_reason, time.time(), choices))

    def cached(self, key: str, request_id: str) -> GenResult | None:
        """A response stored earlier under the same cache key (any run), or None."""
        row = self.db.execute("SELECT text, prompt_tokens, completion_tokens, finish_reason, choices "
                              "FROM cache WHERE key=?", (key,)).fetchone()
        return None if row is None else _result(request_id, row)

    def add_candidates(self, run_id: str, rnd: int, cands: list[Candidate]) -> None:
        """Store a round's verdicts and the accepted-sample count in one transaction."""
        accepted = sum(c.verdict == "accepted" for c in cands)
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO candidates (run_id, round, request_id, kind, text, label, verdict, reason, "
                "meta) VALUES (?,?,?,?,?,?,?,?,?)",
                [(run_id, rnd, c.request_id, c.kind, c.text, c.label, c.verdict, c.reason, json.dumps(c.meta))
                 for c in cands])
            self.db.execute("INSERT INTO ledger (run_id, round, event, tokens, money, samples, created) "
                            "VALUES (?,?,?,?,?,?,?)",
                            (run_id, rnd, "accepted", 0, 0.0, accepted, time.time()))

    def finish_round(self, run_id: str, rnd: int, metrics: dict, mlflow_run_id: str | None,
                     analysis: dict | None = None) -> None:
        """A finished round: its metrics, MLflow run and error analysis (what `loop report` draws)."""
        self._write("INSERT OR REPLACE INTO rounds (run_id, round, status, metrics, mlflow_run_id, finished, "
                    "analysis) VALUES (?,?,?,?,?,?,?)",
                    [(run_id, rnd, "done", json.dumps(metrics), mlflow_run_id, time.time(),
                      json.dumps(analysis, default=_plain) if analysis is not None else None)])

    def set_round_mlflow(self, run_id: str, rnd: int, mlflow_run_id: str) -> None:
        """The MLflow run a finished round was logged to later (the tracking server was away at the time)."""
        self._write("UPDATE rounds SET mlflow_run_id=? WHERE run_id=? AND round=?",
                    [(mlflow_run_id, run_id, rnd)])

    def round_rows(self, run_id: str, analysis: bool = False) -> list[dict]:
        """Finished rounds of a run, in order, with their metrics (and error analysis, {} where not kept)."""
        rows = self.db.execute("SELECT round, metrics, mlflow_run_id, analysis FROM rounds "
                               "WHERE run_id=? AND status='done' ORDER BY round", (run_id,)).fetchall()
        out = [{"round": r[0], "metrics": json.loads(r[1]), "mlflow_run_id": r[2]} for r in rows]
        if analysis:
            for row, r in zip(out, rows):
                row["analysis"] = json.loads(r[3]) if r[3] else {}
        return out

    def candidates(self, run_id: str) -> list[dict]:
        """Every screened candidate of a run, in the order stored: round, kind, text, label, verdict, reason,
        meta."""
        rows = self.db.execute("SELECT round, kind, text, label, verdict, reason, meta FROM candidates "
                               "WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        keys = ("round", "kind", "text", "label", "verdict", "reason")
        return [{**dict(zip(keys, r[:6])), "meta": json.loads(r[6]) if r[6] else {}} for r in rows]

    def completion_share(self) -> float | None:
        """Completion tokens over max_tokens across the store's earlier responses (None if there are none)."""
        row = self.db.execute("SELECT SUM(r.completion_tokens), SUM(q.max_tokens) FROM responses r "
                              "JOIN requests q ON q.id = r.request_id AND q.run_id = r.run_id").fetchone()
        return row[0] / row[1] if row and row[1] else None

    def run_ids(self) -> list[str]:
        """Every run in the store, oldest first."""
        return [r[0] for r in self.db.execute("SELECT id FROM runs ORDER BY created")]

    def run_info(self, run_id: str) -> dict | None:
        """The run's stored config, MLflow parent run and status, or None if there is no such run."""
        row = self.db.execute("SELECT config, mlflow_run_id, status, created, base_dir FROM runs WHERE id=?",
                              (run_id,)).fetchone()
        if row is None:
            return None
        return {"config": json.loads(row[0]), "mlflow_run_id": row[1], "status": row[2], "created": row[3],
                "base_dir": row[4]}

    def started(self, run_id: str) -> bool:
        """Whether the run got as far as its MLflow run, a request or a round (else it failed while
        loading)."""
        row = self.db.execute("SELECT mlflow_run_id FROM runs WHERE id=?", (run_id,)).fetchone()
        return bool(row and row[0]) or any(self.count(table, run_id) for table in ("requests", "rounds"))

    def forget_unstarted(self, run_id: str) -> None:
        """Drop the record of a run that never started, so its name can be used afresh."""
        assert not self.started(run_id), run_id
        self._write("DELETE FROM runs WHERE id=?", [(run_id,)])

    def discard_unfinished(self, run_id: str) -> int:
        """Forget the verdicts of rounds that did not finish (they are screened again on resume; their
        responses stay, paid once, and come back free from the cache). Returns the candidates dropped."""
        done = self.db.execute("SELECT COALESCE(MAX(round), -1) FROM rounds WHERE run_id=? AND status='done'",
                               (run_id,)).fetchone()[0]
        with self.db:
            self.db.execute("BEGIN")
            n = self.db.execute("DELETE FROM candidates WHERE run_id=? AND round>?", (run_id, done)).rowcount
            self.db.execute("DELETE FROM ledger WHERE run_id=? AND round>? AND event='accepted'",
                            (run_id, done))
        return n

    def spent(self, run_id: str) -> Spend:
        row = self.db.execute("SELECT COALESCE(SUM(tokens),0), COALESCE(SUM(money),0), "
                              "COALESCE(SUM(samples),0) FROM ledger WHERE run_id=?", (run_id,)).fetchone()
        return Spend(tokens=int(row[0]), money=float(row[1]), samples=int(row[2]))

    def accepted(self, run_id: str) -> list[Example]:
        rows = self.db.execute("SELECT text, label, meta FROM candidates WHERE run_id=? "
                               "AND verdict='accepted' ORDER BY id", (run_id,)).fetchall()
        return [Example(text=t, label=lab, source="generated", group=json.loads(m or "{}").get("problem", ""))
                for t, lab, m in rows]

    def count(self, table: str, run_id: str) -> int:
        assert table in ("requests", "responses", "candidates", "rounds")
        return self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id=?", (run_id,)).fetchone()[0]

    def close(self) -> None:
        self.db.close()
