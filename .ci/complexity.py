#!/usr/bin/env python3
"""Fail when a function under ``src/`` is over cyclomatic complexity 15 or a file over 700 lines.

    python3 .ci/complexity.py [--max 15] [--max-lines 700] [PATH ...]      (default: src)

Complexity is counted the way radon counts it, near enough: 1, plus one for each ``if``/``elif``,
conditional expression, loop, ``except``, ``assert``, ``match`` case and comprehension clause
(and each of its ``if`` filters), plus one for each extra operand of ``and``/``or``. A nested
function is counted on its own, not in the function that holds it.

Prints one line per offender and a summary; exits 1 when anything is over, so CI stops.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from pathlib import Path

_BRANCHES = (
    ast.If,
    ast.IfExp,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ExceptHandler,
    ast.Assert,
    ast.match_case,
)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _walk_own(fn: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``fn`` except those inside nested functions and lambdas."""
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        node = stack.pop()
        if isinstance(node, (*_FUNCTIONS, ast.Lambda)):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def complexity(fn: ast.AST) -> int:
    score = 1
    for node in _walk_own(fn):
        if isinstance(node, _BRANCHES):
            score += 1
        elif isinstance(node, ast.BoolOp):
            score += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            score += 1 + len(node.ifs)
    return score


def functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, _FUNCTIONS):
            yield prefix + node.name, node
            yield from functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")


def offenders(paths: list[Path], max_complexity: int, max_lines: int) -> list[str]:
    found: list[str] = []
    for root in paths:
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for path in files:
            text = path.read_text("utf-8")
            lines = text.count("\n")
            if lines > max_lines:
                found.append(f"{path}: {lines} lines (over {max_lines})")
            for name, fn in functions(ast.parse(text, str(path))):
                score = complexity(fn)
                if score > max_complexity:
                    where = f"{path}:{getattr(fn, 'lineno', 0)} {name}"
                    found.append(f"{where}: complexity {score} (over {max_complexity})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[Path("src")])
    parser.add_argument("--max", type=int, default=15)
    parser.add_argument("--max-lines", type=int, default=700)
    args = parser.parse_args(argv)
    found = offenders(args.paths, args.max, args.max_lines)
    for line in found:
        print(line)
    limits = f"functions <= {args.max}, files <= {args.max_lines} lines"
    print(f"complexity: {len(found)} over the limits ({limits})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
