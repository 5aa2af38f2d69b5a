"""The long run of the stateful session-lifecycle fuzzer (tests/lifecycle_machine.py).

    PYTHONPATH=src python fuzz/lifecycle.py --store memory --steps 100000
    PYTHONPATH=src python fuzz/lifecycle.py --store sqlite --steps 100000 --per-example 50

Runs the machine's examples (``--per-example`` rules each, fresh store each) until at least
``--steps`` rules have run, then prints the totals: examples, steps, requests, invariant
violations and the time taken. Any violation stops the run with hypothesis' (shrunk) example and
a non-zero exit. Redis and PostgreSQL need their servers (see tests/conftest.py for the URLs);
the PostgreSQL run's own database is dropped when the run ends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402
from tests.conftest import _drop_postgres_database  # noqa: E402
from tests.lifecycle_machine import TOTALS, LifecycleMachine  # noqa: E402
from tests.test_lifecycle_fuzz import OPENERS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=sorted(OPENERS), default="memory")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--per-example", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200, help="examples per hypothesis run")
    args = parser.parse_args()
    opener = OPENERS[args.store]
    machine = type(
        f"Lifecycle_{args.store}",
        (LifecycleMachine,),
        {"open_store": staticmethod(opener), "cheap": args.store in ("redis", "postgres")},
    )
    config = settings(
        max_examples=args.batch,
        stateful_step_count=args.per_example,
        deadline=None,
        database=None,  # every batch explores afresh
        suppress_health_check=list(HealthCheck),
    )
    started = time.monotonic()
    while TOTALS["steps"] < args.steps:
        run_state_machine_as_test(machine, settings=config)
        elapsed = time.monotonic() - started
        print(f"[{args.store}] {TOTALS} after {elapsed:.0f} s", flush=True)
    elapsed = time.monotonic() - started
    print(
        f"lifecycle fuzz, {args.store}: {TOTALS['examples']} examples, {TOTALS['steps']} steps,"
        f" {TOTALS['requests']} requests, {TOTALS['violations']} violations,"
        f" {elapsed:.0f} s ({TOTALS['steps'] / elapsed:.0f} steps/s)"
    )
    return 1 if TOTALS["violations"] else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    finally:
        _drop_postgres_database()  # the run's own database, as pytest drops it at the end
