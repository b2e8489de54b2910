"""The sandbox: honest programs pass or fail as they should; hostile ones neither pass nor get out.

The corpora (loop/bench/programs.py) run under bubblewrap and under the built-in fallback, as the
user running the tests (root in CI) and, where this runner can switch to one, as `nobody`.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from loop import isolation
from loop.bench.programs import ADD, CHECK, FALSE_PASSES, run_escapes
from loop.sandbox import Limits, run_many, run_program, run_tests

FAST = Limits(timeout_s=4, cpu_s=2, memory_mb=256)
BACKENDS = ["bwrap", "builtin"]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "bwrap" and isolation.bwrap_problem():
        pytest.skip(isolation.bwrap_problem())
    monkeypatch.setenv("LOOP_SANDBOX", request.param)
    return request.param


def test_passing_failing_and_the_causes(backend):
    assert run_program("print('hi')", FAST).status == "completed"
    assert not run_program("print('hi')", FAST).passed  # only tests pass
    assert run_program("assert 1 == 2", FAST).status == "crash"
    assert run_tests(ADD, CHECK, "add", FAST).passed
    wrong = run_tests(ADD.replace("+", "-"), CHECK, "add", FAST)
    assert wrong.status == "failed" and "AssertionError" in wrong.output
    assert run_tests("def other():\n    pass\n", CHECK, "add", FAST).status == "crash"
    assert run_tests(ADD + "import sys\nsys.exit(0)\n", CHECK, "add", FAST).status == "exit_before_tests"
    assert run_tests("def add(a, b):\n    return [a + b]\n", CHECK, "add", FAST).status == "failed"
    assert [o.passed for o in run_many([(ADD, CHECK, "add"), ("def add(a, b):\n    return 0", CHECK, "add")],
                                       FAST)] == [True, False]


def test_helpers_come_from_the_reference_not_the_program(backend):
    """A program that redefines the helper its tests use (HumanEval/32's `poly`) cannot fool them."""
    reference = "def poly(x):\n    return x - 3\n\ndef root():\n    return 3\n"
    test = "def check(candidate):\n    assert poly(candidate()) == 0\n"
    cheat = "def poly(x):\n    return 0\n\ndef root():\n    return 99\n"
    assert run_tests(reference, test, "root", FAST, support=reference).passed
    assert not run_tests(cheat, test, "root", FAST, support=reference).passed


@pytest.mark.parametrize("name", sorted(FALSE_PASSES))
def test_no_trick_passes_a_wrong_program(name, backend):
    out = run_tests(FALSE_PASSES[name], CHECK, "add", FAST)
    assert not out.passed, out
    assert out.status in ("failed", "crash", "exit_before_tests", "not_plain", "timeout")


def test_endless_programs_time_out_and_the_pid_namespace_dies(backend):
    out = run_program("import time\ntime.sleep(60)", FAST)
    assert out.status == "timeout" and out.seconds < FAST.timeout_s + 2
    assert run_tests("def add(a, b):\n    while True:\n        pass\n", CHECK, "add",
                     FAST).status == "timeout"


def test_output_is_capped(backend):
    limits = Limits(timeout_s=4, cpu_s=2, output_kb=16)
    out = run_program("import sys\nfor _ in range(2000):\n    sys.stdout.write('x' * 4096)\nprint('END')",
                      limits)
    assert out.output_truncated and out.output.rstrip().endswith("END") and len(out.output) < 20 * 1024


def test_memory_bomb_is_stopped(backend):
    out = run_program("x = ' ' * (4 * 1024 ** 3)\nprint('allocated')", FAST)
    assert out.status == "crash" and "MemoryError" in out.output and "allocated" not in out.output


def test_environment_is_scrubbed(monkeypatch, backend):
    monkeypatch.setenv("LOOP_TEST_SECRET", "sentinel-4242")
    out = run_program("import os\nprint(sorted(os.environ))\nprint(os.environ.get('LOOP_TEST_SECRET'))", FAST)
    assert out.status == "completed" and "sentinel-4242" not in out.output \
        and "LOOP_TEST_SECRET" not in out.output


def test_the_working_folder_is_writable_and_files_are_capped(backend):
    assert run_program("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())",
                       FAST).status == "completed"
    out = run_program("open('big', 'w').write('x' * (64 * 1024 * 1024))", FAST)
    assert out.status == "crash" and "File too large" in out.output


def test_no_escape(backend):
    """Every program of the escape corpus, checked from inside (its own report) and outside."""
    tried, leaks = run_escapes(FAST)
    assert tried >= 25 and leaks == {}


def test_nothing_is_left_behind(backend, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    run_many([(ADD, CHECK, "add"), (FALSE_PASSES["thread exits later"], CHECK, "add")], FAST)
    run_program("open('x', 'w').write('y')", FAST)
    assert list(tmp_path.iterdir()) == []


# `env` execs the interpreter as nobody (setpriv itself may reach a path nobody could not)
NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
          "--bounding-set=-all", "/usr/bin/env")


def _nobody_can_run_python() -> str:
    """A Python that `nobody` can run, with this checkout importable, or '' (then the test is skipped)."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        return ""
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([*NOBODY, python, "-c", "import sys; assert sys.version_info >= (3, 10)"],
                               capture_output=True)
        if probe.returncode == 0:
            return python
    return ""


@pytest.mark.parametrize("mode", BACKENDS)
def test_corpora_as_a_non_root_user(mode):
    python = _nobody_can_run_python()
    if not python:
        pytest.skip("this runner cannot run Python as nobody")
    if mode == "bwrap" and isolation.bwrap_problem():
        pytest.skip(isolation.bwrap_problem())
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="loop-nobody-"))  # pytest's tmp_path sits in a root-only folder
    copy = tmp_path / "src"
    shutil.copytree(Path(__file__).resolve().parents[1] / "loop", copy / "loop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rwX", str(tmp_path)], check=True)
    script = ("import json\nfrom loop.bench.programs import run_hostile\n"
              "print(json.dumps(run_hostile()))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(copy), "LOOP_SANDBOX": mode}
    out = subprocess.run([*NOBODY, python, "-c", script],
                         capture_output=True, text=True, env=env, cwd=str(copy), timeout=600)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["backend"] == mode and got["correct_program_passes"]
    assert got["false_passes"] == [] and got["escapes"] == {}
