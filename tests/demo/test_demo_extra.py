"""``pip install 'sessionwarden[demo]'`` installs everything both demos import: the README
runs ``sessionwarden demo`` and ``python -m sessionwarden.demo.flask_main`` after installing
only that extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "src" / "sessionwarden" / "demo"

#: Import name -> distribution name, where they differ.
_DISTRIBUTION = {"werkzeug": "flask", "prometheus_client": "prometheus-client"}
#: Import names that a listed distribution always brings along.
_BROUGHT = {"markupsafe": "jinja2"}


def _third_party_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "sessionwarden"}


def _demo_extra() -> set[str]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    return {re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower() for req in extras["demo"]}


def test_the_demo_extra_installs_every_module_the_demos_import() -> None:
    extra = _demo_extra()
    missing = set()
    for module in sorted(DEMO.glob("*.py")):
        for name in _third_party_imports(module):
            wanted = _DISTRIBUTION.get(name, name).lower()
            if wanted not in extra and _BROUGHT.get(name) not in extra:
                missing.add(f"{module.name}: {name}")
    assert not missing, f"imported by the demo but not in the [demo] extra: {sorted(missing)}"
