import random

from loop.mutation import changed_lines, mutants, normalize, rename_locals
from loop.sandbox import Limits, run_tests

CODE = '''
def count_up(n: int) -> list:
    """Numbers below n that are even."""
    out = []
    i = 0
    while i < n:
        if i % 2 == 0 and not i < 0:
            out.append(i)
        i += 1
    return out
'''
TEST = "def check(f):\n    assert f(5) == [0, 2, 4]\n    assert f(0) == []"


def test_normalize():
    assert normalize("x=1") == "x = 1"
    assert normalize("def f(:") is None


def test_each_mutant_changes_one_line_and_never_the_docstring():
    source = normalize(CODE)
    ms = mutants(CODE, random.Random(0), 50)
    assert len(ms) >= 8 and len({m.code for m in ms}) == len(ms)
    kinds = {m.kind for m in ms}
    assert {"mutant:compare", "mutant:arith", "mutant:bool", "mutant:drop_not", "mutant:const+1"} <= kinds
    for m in ms:
        assert m.lines and len(m.lines) == 1 and m.lines == changed_lines(source, m.code)
        assert '"""Numbers below n that are even."""' in m.code
    # most one-site mutants break the function; the tests say which
    verdicts = [run_tests(m.code, TEST, "count_up", Limits(timeout_s=3, cpu_s=2)).passed for m in ms[:8]]
    assert verdicts.count(False) >= 5


def test_renaming_keeps_behaviour_and_parameters():
    r = rename_locals(CODE, random.Random(1))
    assert r is not None and r.kind == "renamed"
    assert "def count_up(n: int)" in r.code and "out = []" not in r.code and "i = 0" not in r.code
    assert run_tests(r.code, TEST, "count_up", Limits(timeout_s=3, cpu_s=2)).passed
    assert rename_locals("def f(x):\n    return x", random.Random(0)) is None  # nothing local to rename
