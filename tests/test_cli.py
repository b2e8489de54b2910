import pytest
from click.testing import CliRunner

from loop.cli import main
from loop.errors import TeacherError


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_help_lists_commands_and_options():
    assert {"run", "config", "assets"} <= set(invoke("--help").output.split())
    out = invoke("run", "--help").output
    for opt in ("--rounds", "--strategy", "--teacher", "--teacher-model", "--budget-tokens", "--set",
                "--config"):
        assert opt in out


def test_bad_config_key_is_a_clean_error(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("budget:\n  tokenz: 3\n")
    res = invoke("run", "--config", str(p))
    assert res.exit_code == 1
    assert "ConfigError" in res.output and "bad.yaml:budget: unknown key 'tokenz'" in res.output
    assert "Traceback" not in res.output


def test_missing_data_file_fails_before_models_load(tmp_path):
    res = invoke("run", "--set", f"data.source={tmp_path}/none.jsonl", "--set", f"run.dir={tmp_path}/runs",
                 "--set", f"tracking.uri=sqlite:///{tmp_path}/m.db")
    assert res.exit_code == 1 and "DataError" in res.output and "file not found" in res.output


def test_unknown_backend_lists_valid_ones():
    res = invoke("run", "--teacher", "telepathy")
    assert res.exit_code == 1 and ("teacher.backend: unknown name 'telepathy' "
                                   "(valid: llamacpp, openai, replay, transformers, vllm)") in res.output


def test_bad_set_syntax():
    res = invoke("config", "--set", "budget.tokens")
    assert res.exit_code == 2 and "KEY=VALUE" in res.output


def test_config_prints_resolved_and_explains():
    res = invoke("config", "--set", "budget.tokens=777")
    assert res.exit_code == 0 and "tokens: 777" in res.output
    assert "splits train 200, dev_mine 500" in res.output
    assert "# checked: data, prompts" in res.output
    assert "mining.threshold" in invoke("config", "--explain").output


def test_config_runs_the_dry_runs_checks_on_data_and_columns(tmp_path):
    """`loop config` fails where the run would: a missing data file, a misnamed column."""
    res = invoke("config", "--set", f"data.source={tmp_path}/none.jsonl")
    assert res.exit_code == 1 and "DataError" in res.output and "file not found" in res.output
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"body": "text {i}", "label": "neutral"}}\n' for i in range(50)))
    res = invoke("config", "--set", f"data.source={rows}")
    assert res.exit_code == 1 and "text" in res.output and "Traceback" not in res.output


def test_a_teacher_that_is_down_stops_the_run_with_the_resume_command(tmp_path, monkeypatch):
    import types

    import loop.components
    import loop.controller
    from loop.errors import TeacherDown

    closed = []
    parts = types.SimpleNamespace(store=types.SimpleNamespace(path=tmp_path / "store.sqlite",
                                                              close=lambda: closed.append("store"),
                                                              set_run=lambda run_id, **fields: None),
                                  teacher=types.SimpleNamespace(unload=lambda: closed.append("teacher")),
                                  tracker=types.SimpleNamespace(uri="sqlite:///x"))
    monkeypatch.setattr(loop.components, "assemble", lambda cfg, run_dir: parts)

    def down(*args, **kwargs):
        raise TeacherDown("the teacher is down: 12 consecutive failed attempts across 1 server(s), "
                          "last x: HTTP 503")

    monkeypatch.setattr(loop.controller, "run_loop", down)
    res = CliRunner().invoke(main, ["run", "--name", "r1", "--set", f"run.dir={tmp_path}/runs"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "TeacherDown: the teacher is down" in res.output
    assert "loop run --config None --resume r1" not in res.output  # a usable command, not a placeholder
    assert "--resume r1" in res.output and "stored and paid once" in res.output
    assert closed == ["teacher", "store"]  # the store is closed cleanly, the engine freed


@pytest.mark.parametrize("how", ["ctrl-c", "engine died of it"])
def test_an_interrupted_run_says_where_it_stopped_and_how_to_resume(tmp_path, monkeypatch, how):
    """Ctrl-C, or the teacher error an engine killed by the same Ctrl-C raises: one line naming the stage and
    round, and a resume command that works as printed; exit code 130."""
    import types

    import loop.cli
    import loop.components
    import loop.controller
    from loop import progress

    store = types.SimpleNamespace(path=tmp_path / "store.sqlite", close=lambda: None,
                                  set_run=lambda run_id, **fields: None)
    parts = types.SimpleNamespace(store=store,
                                  teacher=types.SimpleNamespace(unload=lambda: None),
                                  tracker=types.SimpleNamespace(uri="sqlite:///x"))
    monkeypatch.setattr(loop.components, "assemble", lambda cfg, run_dir: parts)
    monkeypatch.setattr(loop.cli, "INTERRUPTED", [])

    def interrupted(*args, **kwargs):
        progress.NOW.round, progress.NOW.stage = 2, "generate"
        if how == "ctrl-c":
            raise KeyboardInterrupt
        loop.cli.INTERRUPTED.append(2)
        raise TeacherError("vLLM generation failed: EngineDeadError: EngineCore encountered an issue")

    monkeypatch.setattr(loop.controller, "run_loop", interrupted)
    res = CliRunner().invoke(main, ["run", "--name", "r1", "--set", f"run.dir={tmp_path}/runs"])
    assert res.exit_code == 130 and "Traceback" not in res.output and "EngineDeadError" not in res.output
    assert "interrupted during generate of round 2; nothing paid is lost; resume with: loop run" in res.output
    assert "--resume r1" in res.output


@pytest.mark.parametrize("signame,code_expected,said", [("SIGTERM", 143, "SIGTERM"),
                                                       ("SIGINT", 130, "SIGINT: stopping")])
def test_a_signal_exits_through_finally_blocks(tmp_path, signame, code_expected, said):
    """A SIGTERM'd or Ctrl-C'd `loop` runs its cleanup (e.g. shutting the vLLM engine down) instead of dying
    at once."""
    import subprocess
    import sys

    marker = tmp_path / "cleaned"
    code = ("import os, signal, time\n"
            "from loop.cli import _exit_cleanly_on_sigterm\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"  # a terminal's (nohup ignores it)
            "_exit_cleanly_on_sigterm()\n"
            "try:\n"
            f"    os.kill(os.getpid(), signal.{signame})\n"
            "    time.sleep(30)\n"
            "finally:\n"
            f"    open({str(marker)!r}, 'w').write('yes')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == code_expected and marker.read_text() == "yes", proc.stderr
    assert said in proc.stderr
