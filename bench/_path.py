"""Import-path set-up shared by the bench entry points.

``python bench/run.py`` puts ``bench/`` first on ``sys.path``, where ``bench/http.py`` would
shadow the standard library's ``http`` package. Every entry point imports this module first
(``python -m bench.run`` needs none of it): it swaps ``bench/`` for the repository root and adds
``src/`` so the benchmarks run against the working tree without installing it.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")


def fix() -> None:
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]
    for path in (SRC, ROOT):
        if path not in sys.path:
            sys.path.insert(0, path)
    stale = sys.modules.get("http")
    if stale is not None and os.path.dirname(getattr(stale, "__file__", "") or "") == HERE:
        del sys.modules["http"]
