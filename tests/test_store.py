from loop.records import Candidate, GenRequest, GenResult
from loop.store import RunStore


def test_store_round_trip(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    store.start_run("r1", {"a": 1})
    req = GenRequest(messages=[{"role": "user", "content": "hi"}], max_tokens=5, temperature=0, top_p=1,
                     seed=0)
    store.add_requests("r1", 1, [req], [3])
    store.add_response("r1", 1, GenResult(req.id, "reply", 3, 4, "stop", 0.1), cost=0.5)
    store.add_candidates("r1", 1, [Candidate("good", "neutral", req.id, "targeted", verdict="accepted"),
                                   Candidate("bad", "", req.id, "targeted", verdict="rejected",
                                             reason="parse")])
    spent = store.spent("r1")
    assert (spent.tokens, spent.money, spent.samples) == (7, 0.5, 1)
    assert [e.text for e in store.accepted("r1")] == ["good"]
    store.close()
    again = RunStore(tmp_path / "s.sqlite")
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert again.count("responses", "r1") == 1 and again.spent("r1").tokens == 7
    assert again.spent("other").tokens == 0


def test_a_damaged_store_is_refused_on_open(tmp_path):
    import pytest

    from loop.errors import RunStateError
    from loop.store import RunStore

    path = tmp_path / "store.sqlite"
    RunStore(path).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xde\xad" * ((4096 - 100) // 2)  # scribble over the first page
    path.write_bytes(bytes(data))
    with pytest.raises(RunStateError, match="integrity check"):
        RunStore(path)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStateError, match="integrity check"):
        RunStore(garbage)


def test_an_old_store_gains_base_dir_and_unstarted_runs_can_be_forgotten(tmp_path):
    import sqlite3

    import pytest

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)  # the runs table as stores written before base_dir had it
    db.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, created REAL, config TEXT, mlflow_run_id TEXT, "
               "status TEXT)")
    db.execute("INSERT INTO runs VALUES ('old', 1.0, '{}', NULL, 'running')")
    db.commit()
    db.close()
    store = RunStore(path)
    assert store.run_info("old")["base_dir"] is None
    store.start_run("new", {"a": 1})
    store.set_run("new", base_dir="/somewhere")
    assert store.run_info("new")["base_dir"] == "/somewhere"
    assert not store.started("new")
    store.forget_unstarted("new")
    assert store.run_info("new") is None
    store.start_run("busy", {})
    store.set_run("busy", mlflow_run_id="abc")
    assert store.started("busy")
    with pytest.raises(AssertionError):
        store.forget_unstarted("busy")
    store.start_run("ran", {})
    store.finish_round("ran", 0, {}, None)
    assert store.started("ran")
