"""Are a teacher-written problem's tests worth anything? Two checks before its solution is trusted.

1. Shape: every test is `assert <expression>` that compares a call of the problem's function with a
   concrete value (`assert f(2) == 4`, `assert abs(f(0.5) - 0.25) < 1e-9`), built only of literals,
   calls of the function and a few pure built-ins. `assert True`, `assert 1`, `assert f(1) == f(1)`
   and anything that reaches for names, attributes or imports are weak. (These tests run in the judge,
   where the program cannot reach; the shape check also keeps them from reaching anything else.)
2. Power: the tests must fail on at least one one-site mutant of the solution they come with;
   tests that every mutant passes check nothing (`weak_tests`).
"""

from __future__ import annotations

import ast
import random

from loop.mutation import mutants

PURE = {"abs", "len", "sorted", "set", "list", "tuple", "round", "sum", "min", "max", "all", "any", "str",
        "int", "float", "bool", "frozenset", "dict", "reversed"}
NODES = (ast.Expression, ast.Compare, ast.Call, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict,
         ast.UnaryOp, ast.BinOp, ast.BoolOp, ast.Subscript, ast.Slice, ast.keyword, ast.Name, ast.Load,
         ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
MUTANTS = 6


def _calls(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in (name, "candidate")
               for n in ast.walk(node))


def _shape(expr: ast.expr, name: str) -> str:
    """'' when the expression has the allowed shape, else what is wrong with it."""
    for node in ast.walk(expr):
        if not isinstance(node, NODES):
            return f"uses {type(node).__name__}"
        if isinstance(node, ast.Name) and node.id not in PURE | {name, "candidate"}:
            return f"uses the name {node.id}"
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            return "calls something other than a plain name"
    if not isinstance(expr, ast.Compare):
        return "does not compare"
    sides = [expr.left, *expr.comparators]
    if not any(_calls(s, name) for s in sides):
        return f"does not call {name}"
    if all(_calls(s, name) for s in sides):
        return "compares no concrete value"
    return ""


def weak_reason(tests: list[str], name: str) -> str:
    """'' when every test line has the allowed shape, else the first problem found."""
    for line in tests:
        try:
            stmt = ast.parse(line.strip()).body[0]
        except (SyntaxError, ValueError, RecursionError, IndexError):
            return "does not parse"
        if not isinstance(stmt, ast.Assert):
            return "not an assert"
        if stmt.msg is not None and not isinstance(stmt.msg, ast.Constant):
            return "an assert message that is not a constant"
        try:
            problem = _shape(stmt.test, name)
        except RecursionError:
            problem = "nested too deeply"
        if problem:
            return f"{line.strip()[:80]!r} {problem}"
    return ""


def mutant_jobs(program: str, test: str, name: str, seed: str) -> list[tuple[str, str, str]]:
    """Sandbox jobs: the tests against up to MUTANTS one-site mutants of the solution."""
    return [(m.code, test, name) for m in mutants(program, random.Random(seed), MUTANTS)]
