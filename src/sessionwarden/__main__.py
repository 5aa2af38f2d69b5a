"""``python -m sessionwarden ...``: the ``sessionwarden`` command (:mod:`sessionwarden.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
