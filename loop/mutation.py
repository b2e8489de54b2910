"""Program variants from the AST: one-site mutations (likely bugs) and local renaming (same meaning).

Code is normalised with `ast.unparse`, so a mutant differs from its source on exactly the
mutated line(s) and `changed_lines` finds them. Whether a variant is buggy is never
decided here: the problem's tests decide, in the sandbox.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import random
from dataclasses import dataclass

SWAPS = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Add, ast.FloorDiv: ast.Div, ast.Div: ast.FloorDiv,
    ast.Mod: ast.FloorDiv, ast.And: ast.Or, ast.Or: ast.And,
}
NAMES = ["value", "item", "result", "acc", "idx", "tmp", "current", "total", "count", "elem", "res", "out",
         "buf", "cur", "node", "part", "word", "num", "val", "seen"]


def normalize(code: str) -> str | None:
    """The code as `ast.unparse` writes it, or None if it does not parse."""
    try:
        return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError, RecursionError):
        return None


def _is_docstring(node: ast.AST, parents: dict) -> bool:
    parent = parents.get(node)
    return (isinstance(parent, ast.Expr) and isinstance(parents.get(parent), (ast.FunctionDef, ast.Module))
            and isinstance(node, ast.Constant) and isinstance(node.value, str))


def _sites(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(node, operator) pairs where one mutation can be applied."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sites += [(node, f"compare:{i}") for i, op in enumerate(node.ops) if type(op) in SWAPS]
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAPS:
            sites.append((node, "arith"))
        elif isinstance(node, ast.BoolOp):
            sites.append((node, "bool"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            sites.append((node, "drop_not"))
        elif isinstance(node, ast.Constant) and not _is_docstring(node, parents):
            if isinstance(node.value, bool):
                sites.append((node, "flip_bool"))
            elif isinstance(node.value, int):
                sites.append((node, "const+1"))
                if node.value > 0:
                    sites.append((node, "const-1"))
    return sites


def _apply(tree: ast.AST, node: ast.AST, op: str) -> ast.AST:
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    if op.startswith("compare:"):
        i = int(op.split(":")[1])
        node.ops[i] = SWAPS[type(node.ops[i])]()
    elif op in ("arith", "bool"):
        node.op = SWAPS[type(node.op)]()
    elif op == "drop_not":
        parent = parents[node]
        for field, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, field, node.operand)
            elif isinstance(value, list):
                setattr(parent, field, [node.operand if v is node else v for v in value])
    elif op == "flip_bool":
        node.value = not node.value
    elif op in ("const+1", "const-1"):
        node.value = node.value + (1 if op == "const+1" else -1)
    return tree


@dataclass
class Variant:
    code: str
    kind: str  # mutant:<operator> | renamed
    lines: list[int]  # 1-based lines of `code` that differ from the source


def changed_lines(source: str, variant: str) -> list[int]:
    """1-based line numbers of `variant` that are not in `source` (by a line diff)."""
    out = []
    matcher = difflib.SequenceMatcher(a=source.splitlines(), b=variant.splitlines(), autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "insert"):
            out.extend(range(j1 + 1, j2 + 1))
    return out


def mutants(code: str, rng: random.Random, limit: int) -> list[Variant]:
    """Up to `limit` distinct one-site mutants of normalised `code`, sites chosen at random."""
    source = normalize(code)
    if source is None:
        return []
    count = len(_sites(ast.parse(source)))
    order = list(range(count))
    rng.shuffle(order)
    out, seen = [], {source}
    for k in order:
        tree = ast.parse(source)
        node, op = _sites(tree)[k]
        try:
            mutated = ast.unparse(_apply(tree, node, op))
        except (ValueError, TypeError, KeyError):
            continue
        if mutated in seen or normalize(mutated) != mutated:
            continue
        seen.add(mutated)
        out.append(Variant(mutated, f"mutant:{op.split(':')[0]}", changed_lines(source, mutated)))
        if len(out) >= limit:
            break
    return out


class Renamer(ast.NodeTransformer):
    def __init__(self, mapping: dict[str, str]):
        self.mapping = mapping

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.mapping.get(node.id, node.id)
        return node


def rename_locals(code: str, rng: random.Random) -> Variant | None:
    """The code with the local variables of each function renamed (parameters and globals kept)."""
    source = normalize(code)
    if source is None:
        return None
    tree = ast.parse(source)
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | set(dir(builtins))
    taken |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    taken |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for a in ast.walk(n.args)
              if isinstance(a, ast.arg)}
    mapping = {}
    for func in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
        params = {a.arg for a in ast.walk(func.args) if isinstance(a, ast.arg)}
        declared = {name for n in ast.walk(func) if isinstance(n, (ast.Global, ast.Nonlocal))
                    for name in n.names}
        stored = [n.id for n in ast.walk(func) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
        for name in dict.fromkeys(stored):
            if name in params or name in declared or name in mapping:
                continue
            free = [c for c in NAMES if c not in taken]
            new = rng.choice(free) if free else f"{name}_{len(mapping)}"
            mapping[name] = new
            taken.add(new)
    if not mapping:
        return None
    renamed = ast.unparse(Renamer(mapping).visit(tree))
    return Variant(renamed, "renamed", changed_lines(source, renamed))
