"""cProfile of the hot path: a signed-in, read-only GET through the ASGI middleware.

PYTHONPATH=src python -m bench.profile memory             # or: redis, sqlite
PYTHONPATH=src python -m bench.profile redis 5000 write   # the write row (or: sign-in)
PYTHONPATH=src python -m bench.profile flask-redis 5000 write  # Flask on the WSGI middleware
                                                               # (flask-memory: no I/O)
"""

from __future__ import annotations

try:
    from bench import _path
except ImportError:  # run as a script: python bench/profile.py
    import _path  # type: ignore[no-redef]
_path.fix()

import asyncio  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from bench import ours  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    kind = args[0] if args else "memory"
    n = int(args[1]) if len(args) > 1 else 5000
    mode = args[2] if len(args) > 2 else "get"
    loop = asyncio.new_event_loop()
    row: Any
    if kind.startswith("flask-"):
        row = ours.OursFlask(kind.removeprefix("flask-"), mode=mode)
    else:
        row = ours.OursAsgi(kind, mode=mode)
        row.loop = loop
    row.setup()
    row.run(500)
    prof = cProfile.Profile()
    prof.enable()
    row.run(n)
    prof.disable()
    row.close()
    loop.close()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(28)
    stats.sort_stats("cumulative").print_stats(40)
    return 0


if __name__ == "__main__":
    sys.exit(main())
