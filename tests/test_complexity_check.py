"""The CI complexity gate flags what it should and passes what it should."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "complexity.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_a_function_over_the_limit_fails_the_check(tmp_path: Path) -> None:
    branches = "\n".join(f"    if x == {i}:\n        return {i}" for i in range(16))
    (tmp_path / "busy.py").write_text(f"def busy(x):\n{branches}\n    return -1\n")
    result = run(str(tmp_path))
    assert result.returncode == 1
    assert "busy: complexity 17 (over 15)" in result.stdout


def test_nested_functions_count_on_their_own(tmp_path: Path) -> None:
    inner = "\n".join(f"        if x == {i}:\n            return {i}" for i in range(10))
    outer = "\n".join(f"    if y == {i}:\n        pass" for i in range(10))
    (tmp_path / "nested.py").write_text(
        f"def outer(y):\n{outer}\n    def inner(x):\n{inner}\n        return 0\n    return inner\n"
    )
    result = run(str(tmp_path))
    assert result.returncode == 0, result.stdout


def test_boolean_operators_and_comprehensions_count(tmp_path: Path) -> None:
    (tmp_path / "ops.py").write_text(
        textwrap.dedent(
            """
            def f(a, b, c, d, xs):
                return [x for x in xs if x and a or b or c or d]
            """
        )
    )
    assert run("--max", "6", str(tmp_path)).returncode == 1
    assert run("--max", "7", str(tmp_path)).returncode == 0


def test_a_long_file_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "long.py").write_text("x = 1\n" * 701)
    result = run(str(tmp_path))
    assert result.returncode == 1
    assert "701 lines (over 700)" in result.stdout
