"""Hostile programs are contained by the sandbox; ordinary ones run and report honestly."""

import os

import pytest

from loop.sandbox import Limits, run_many, run_program, run_tests

FAST = Limits(timeout_s=3, cpu_s=2, memory_mb=256)


def test_passing_failing_and_test_harness():
    assert run_program("print('hi')", FAST).passed
    bad = run_program("assert 1 == 2", FAST)
    assert bad.status == "failed" and "AssertionError" in bad.output
    add = "def add(a, b):\n    return a + b"
    check = "def check(candidate):\n    assert candidate(2, 3) == 5"
    assert run_tests(add, check, "add", FAST).passed
    assert not run_tests(add.replace("+", "-"), check, "add", FAST).passed
    assert [o.passed for o in run_many([(add, check, "add"), ("def add(a, b):\n    return 0", check, "add")],
                                       FAST)] == [True, False]


@pytest.mark.parametrize("source", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_endless_programs_time_out(source):
    out = run_program(source, FAST)
    assert out.status == "timeout" and out.seconds < FAST.timeout_s + 2


def test_memory_bomb_is_stopped():
    out = run_program("x = ' ' * (4 * 1024 ** 3)\nprint('allocated')", FAST)
    assert out.status == "failed" and "MemoryError" in out.output and "allocated" not in out.output


def test_fork_bomb_is_stopped():
    out = run_program("import os\nwhile True:\n    os.fork()", FAST)
    assert out.status == "failed" and "blocked by the loop sandbox" in out.output
    out = run_program("import subprocess\nsubprocess.run(['true'])", FAST)
    assert out.status == "failed"


def test_no_network():
    for source in ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)",
                   "import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('10.255.255.1', 80))"):
        out = run_program(source, FAST)
        assert out.status == "failed", out.output


def test_environment_is_scrubbed(monkeypatch):
    monkeypatch.setenv("LOOP_TEST_SECRET", "sentinel-4242")
    out = run_program("import os\nprint(sorted(os.environ))\nprint(os.environ.get('LOOP_TEST_SECRET'))", FAST)
    assert out.passed and "sentinel-4242" not in out.output and "LOOP_TEST_SECRET" not in out.output


def test_writes_stay_inside(tmp_path):
    target = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)  # even a world-writable folder outside the sandbox is out of reach as root
    run_program(f"open({str(target)!r}, 'w').write('x')", FAST)
    if os.getuid() == 0:
        assert not target.exists()
    out = run_program("open('big', 'w').write('x' * (64 * 1024 * 1024))", FAST)
    assert out.status == "failed" and "File too large" in out.output
    assert run_program("open('scratch.txt', 'w').write('ok')\nprint(open('scratch.txt').read())", FAST).passed
