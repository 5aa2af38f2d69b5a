"""The ``sessionwarden`` command: inspect and end sessions, purge expired ones, run the demo.

Every ``sessions`` command works on store keys and references only, so none of them needs the
application's secret: the secret is used to hash a session ID presented by a browser, and an
operator never has one. The :class:`~sessionwarden.core.Engine` these commands drive is therefore
built with a random throwaway key (:func:`admin_engine`); it is never used, and if it ever were,
the hash it produced would match nothing. Commands that must hash an ID (none today) would need
the real secret and must not use :func:`admin_engine`.

Output names a session by its reference (the first 16 hex digits of its keyed hash), never by its
ID, and text a client chose (user agent, path) is printed with control characters replaced, so a
crafted ``User-Agent`` cannot drive the operator's terminal.

Exit status: 0 done, 1 nothing matched, 2 usage error (bad arguments, bad store URL, demo not
installed), 3 store unavailable, 4 cannot listen (the demo's port is in use); every error is one
line, ``sessionwarden: error: ...`` (see :mod:`sessionwarden.startup`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TextIO

from . import __version__, tokens
from .core import Engine, SessionInfo, run_sync
from .events import iso_utc
from .policy import Policy
from .records import JSON, SessionRecord
from .startup import (
    EXIT_CANNOT_LISTEN,
    EXIT_NO_MATCH,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    Parser,
    check_store,
    parse_store,
    report,
    sqlite_problem,
)
from .stores import SessionStore, StoreUnavailable, open_store, parse_store_url
from .stores.base import migrate_store

__all__ = [
    "EXIT_CANNOT_LISTEN",
    "EXIT_NO_MATCH",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "CliError",
    "build_parser",
    "main",
    "open_cli_store",
]

ENV_STORE = "SESSIONWARDEN_STORE"


#: The CLI's engine lets each record's stored ``expires_at`` (computed by the application with its
#: own timeouts) decide what is live, so its own timeouts are set far beyond any real session.
_HORIZON = 100 * 365 * 86_400.0
#: Tombstones written by ``revoke`` live as long as the library's default absolute timeout, after
#: which the revoked ID would have expired anyway; ``--tombstone-ttl`` matches another setting.
DEFAULT_TOMBSTONE_TTL = Policy(secret_keys=(b"\x00" * 32,)).absolute_timeout

_REF = re.compile(r"[0-9a-f]{8,64}")
_UA_WIDTH = 40

Handler = Callable[[argparse.Namespace], int]


# -- helpers ------------------------------------------------------------------------------------


def admin_engine(tombstone_ttl: float = DEFAULT_TOMBSTONE_TTL) -> Engine:
    """An engine for operator calls that never hash a session ID (list, revoke by user and
    reference, purge). Its key is random and thrown away; see the module docstring."""
    policy = Policy(
        secret_keys=(secrets.token_bytes(32),),
        idle_timeout=_HORIZON,
        absolute_timeout=_HORIZON,
        rotate_every=0,
        tombstone_ttl=tombstone_ttl,
    )
    return Engine(policy)


def safe_text(value: object) -> str:
    """``value`` as one printable line: control and format characters become ``?``."""
    text = "" if value is None else str(value)
    return "".join(c if c.isprintable() else "?" for c in text)


def _one_line(message: str) -> str:
    return safe_text(" ".join(message.split()))


def _time_cell(value: object) -> str:
    """A stored time (POSIX seconds) for a table: ISO 8601 in UTC to the second
    (``2024-05-01T12:00:00Z``, :func:`~sessionwarden.events.iso_utc`); ``-`` for anything that
    is no time (a record or trail entry written by hand or by another program: a string, a
    boolean, ``null``, a number no date has)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return iso_utc(value, fraction=False) or "-"


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    cells = [[safe_text(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _json(value: Any, out: TextIO) -> None:
    # ensure_ascii (the default) escapes every control character a client may have sent.
    print(json.dumps(value, indent=2), file=out)


def _store_url(arg: str | None) -> str:
    url = arg if arg else os.environ.get(ENV_STORE, "")
    if not url:
        raise CliError(EXIT_USAGE, f"no store: pass --store URL or set {ENV_STORE}")
    return url


def open_cli_store(arg: str | None) -> SessionStore:
    """Open the store named by ``--store`` or ``$SESSIONWARDEN_STORE``.

    Never creates one: a SQLite path that does not exist is reported (a typo must not yield an
    empty store and a misleading "no sessions"). The URL is never echoed (it may hold a password).
    """
    url = _store_url(arg)
    spec = parse_store(url)
    if spec.kind == "memory":
        raise CliError(
            EXIT_USAGE, "store URL: memory:// lives inside one process; use sqlite:// or redis://"
        )
    if spec.kind == "sqlite":
        problem = sqlite_problem(spec.path, must_exist=True)
        if problem is not None:
            raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {problem}")
    if spec.kind == "postgres":
        # The pool logs every failed connection attempt: the one-line error names the cause.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    try:
        store = open_store(url)
    except ImportError:
        raise CliError(EXIT_USAGE, _not_installed(spec.kind)) from None
    except ValueError as exc:
        raise CliError(EXIT_USAGE, f"store URL: {exc}") from None
    except StoreUnavailable as exc:
        raise CliError(EXIT_UNAVAILABLE, f"store unavailable: {exc}") from None
    try:
        check_store(store, url)
    except CliError:
        with contextlib.suppress(StoreUnavailable):
            store.close()
        raise
    return store


def _not_installed(kind: str) -> str:
    if kind == "postgres":
        return "PostgreSQL support is not installed: pip install 'sessionwarden[postgres]'"
    return "Redis support is not installed: pip install 'sessionwarden[redis]'"


def _ref_arg(value: str) -> str:
    ref = value.strip().lower()
    if not _REF.fullmatch(ref):
        raise argparse.ArgumentTypeError("a session reference is 8 to 64 hex digits")
    return ref


def _user_arg(value: str) -> str:
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= 1_000_000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000000")
    return number


def _page_size(value: str) -> int:
    number = _positive_int(value)
    if number > 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return number


def _cursor_arg(value: str) -> str:
    if not value or len(value) > 200 or not value.isascii() or not value.isprintable():
        raise argparse.ArgumentTypeError("not a cursor a page printed")
    return value


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return number


def _find_one(store: SessionStore, user: str, ref: str) -> SessionRecord | None:
    """The user's session whose key starts with ``ref``; ``None`` when none does."""
    matches = run_sync(admin_engine().find_sessions(user, ref), store)
    if len(matches) > 1:
        raise CliError(
            EXIT_NO_MATCH, f"reference {ref} matches {len(matches)} sessions: give more digits"
        )
    return matches[0] if matches else None


# -- commands -----------------------------------------------------------------------------------


_LIST_HEADERS = ["REF", "CREATED", "LAST SEEN", "EXPIRES", "IP", "BOUND", "USER AGENT"]


def _list_row(info: SessionInfo) -> list[str]:
    return [
        info.ref,
        _time_cell(info.created_at),
        _time_cell(info.last_seen),
        _time_cell(info.expires_at),
        info.client_ip or "-",
        "yes" if info.device_bound else "no",
        _truncate(safe_text(info.user_agent), _UA_WIDTH) or "-",
    ]


def _sessions(count: int) -> str:
    return f"{count} session{'' if count == 1 else 's'}"


def cmd_list(args: argparse.Namespace, store: SessionStore) -> int:
    if args.all:
        return _list_all(args, store)
    if args.limit is not None or args.after is not None:
        raise CliError(EXIT_USAGE, "--limit and --after page the list of --all")
    infos = run_sync(admin_engine().list_sessions(args.user), store)
    if args.json:
        _json([info.to_dict() for info in infos], sys.stdout)
        return EXIT_OK
    if not infos:
        print(f"no live sessions for user {safe_text(args.user)!r}")
        return EXIT_OK
    _table(_LIST_HEADERS, [_list_row(info) for info in infos], sys.stdout)
    return EXIT_OK


def _list_all(args: argparse.Namespace, store: SessionStore) -> int:
    """One page of every user's live sessions, and the ``--after`` of the next page."""
    engine = admin_engine()
    try:
        infos, after = run_sync(engine.list_all_sessions(args.after, args.limit or 50), store)
    except ValueError:
        raise CliError(EXIT_USAGE, "--after: not a cursor a page of this store printed") from None
    if args.json:
        _json({"sessions": [info.to_dict() for info in infos], "next": after}, sys.stdout)
        return EXIT_OK
    if infos:
        rows = [_list_row(info) for info in infos]
        for row, info in zip(rows, infos, strict=True):  # the user after the reference
            row.insert(1, _truncate(safe_text(info.user_id), 24))
        _table([_LIST_HEADERS[0], "USER", *_LIST_HEADERS[1:]], rows, sys.stdout)
    if after is not None:
        print(f"{_sessions(len(infos))}; next page: --after {after}")
    elif infos or args.after is not None:
        print(_sessions(len(infos)))
    else:
        print("no live signed-in sessions")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace, store: SessionStore) -> int:
    engine = admin_engine(args.tombstone_ttl)
    revoked: list[str]
    if args.all:
        revoked = run_sync(engine.revoke_user(args.user, by="admin"), store)
    else:
        record = _find_one(store, args.user, args.session)
        revoked = []
        # The full key: exactly the session resolved above, whatever its reference's length.
        if record is not None and run_sync(
            engine.revoke_session(args.user, record.key, by="admin"), store
        ):
            revoked = [tokens.ref_of(record.key)]
    if args.json:
        _json({"user": args.user, "revoked": revoked}, sys.stdout)
    elif revoked:
        noun = "session" if len(revoked) == 1 else "sessions"
        print(f"revoked {len(revoked)} {noun} of user {safe_text(args.user)!r}:")
        for ref in revoked:
            print(f"  {ref}")
    else:
        what = "any session" if args.all else f"session {args.session}"
        print(f"nothing revoked: user {safe_text(args.user)!r} has no live {what}", file=sys.stderr)
    return EXIT_OK if revoked else EXIT_NO_MATCH


def cmd_purge(args: argparse.Namespace, store: SessionStore) -> int:
    removed = run_sync(admin_engine().purge(batch=args.batch), store)
    if args.json:
        _json({"removed": removed}, sys.stdout)
    else:
        print(f"purged {removed} expired item{'' if removed == 1 else 's'}")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace, store: SessionStore) -> int:
    """Bring what earlier versions wrote to the store's current layout (idempotent)."""
    changed = migrate_store(store, batch=args.batch)
    if args.json:
        _json({"migrated": changed}, sys.stdout)
    else:
        print(f"migrated {changed} item{'' if changed == 1 else 's'} to the current layout")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, store: SessionStore) -> int:
    stats = store.stats(time.time())
    values = {
        "live_sessions": stats.live_sessions,
        "users": stats.users,
        "tombstones": stats.tombstones,
        "aliases": stats.aliases,
    }
    if args.json:
        _json(values, sys.stdout)
    else:
        for name, value in values.items():
            print(f"{name.replace('_', ' '):<14} {value}")
    return EXIT_OK


def cmd_activity(args: argparse.Namespace, store: SessionStore) -> int:
    record = _find_one(store, args.user, args.session)
    if record is None:
        raise CliError(
            EXIT_NO_MATCH, f"user {safe_text(args.user)!r} has no session {args.session}"
        )
    ref = tokens.ref_of(record.key)
    trail: list[dict[str, JSON]] = store.activity(record.key)
    if args.json:
        _json({"ref": ref, "user": args.user, "activity": trail}, sys.stdout)
        return EXIT_OK
    entries = "1 entry" if len(trail) == 1 else f"{len(trail)} entries"
    print(f"session {ref} of user {safe_text(args.user)!r}: {entries}")
    if trail:
        rows = [
            [
                _time_cell(e.get("at")),
                safe_text(e.get("method", "")) or "-",
                _truncate(safe_text(e.get("path", "")), 60) or "-",
                safe_text(e.get("ip", "")) or "-",
                _truncate(safe_text(e.get("ua", "")), _UA_WIDTH) or "-",
            ]
            for e in trail
        ]
        _table(["TIME", "METHOD", "PATH", "IP", "USER AGENT"], rows, sys.stdout)
    return EXIT_OK


def cmd_store_init(args: argparse.Namespace) -> int:
    """Create (or migrate) the store's schema. Only PostgreSQL has one to create by hand: a
    SQLite file gets its tables when the application first opens it, Redis needs none."""
    url = _store_url(args.store)
    try:
        spec = parse_store_url(url)
    except ValueError as exc:
        raise CliError(EXIT_USAGE, str(exc)) from None
    if spec.kind != "postgres":
        if args.json:
            _json({"store": spec.kind, "done": "nothing to do"}, sys.stdout)
        else:
            print(f"nothing to do: a {spec.kind} store creates what it needs when it is opened")
        return EXIT_OK
    try:
        from .stores.postgres import init_schema
    except ImportError:
        raise CliError(EXIT_USAGE, _not_installed("postgres")) from None
    before, after = init_schema(spec.url, table=spec.prefix)
    done = "created" if before is None else "up to date" if before == after else "migrated"
    if args.json:
        _json({"table": spec.prefix, "before": before, "version": after, "done": done}, sys.stdout)
    else:
        print(f"table {spec.prefix!r}: schema version {after} ({done})")
    return EXIT_OK


def _with_store(command: Callable[[argparse.Namespace, SessionStore], int]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        store = open_cli_store(args.store)
        try:
            return command(args, store)
        finally:
            with contextlib.suppress(StoreUnavailable):
                store.close()

    return handler


def cmd_version(args: argparse.Namespace) -> int:
    print(f"sessionwarden {__version__}")
    return EXIT_OK


# -- the parser ---------------------------------------------------------------------------------


class DemoHooks(NamedTuple):
    """What ``sessionwarden.demo.cli`` provides to define and run the ``demo`` command."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


def load_demo() -> DemoHooks:
    """Import the demo's command hooks. Called only when ``demo`` is the command, so the demo's
    dependencies (and any fault in it) never affect the other commands."""
    try:
        module = importlib.import_module(".demo.cli", __package__ or "sessionwarden")
        return DemoHooks(module.add_arguments, module.run)
    except Exception as exc:  # ImportError, or a broken module: one line, never a traceback
        raise CliError(
            EXIT_USAGE,
            f"the demo is not available ({type(exc).__name__}: {exc}); "
            "install it with: pip install 'sessionwarden[demo]'",
        ) from None


def _demo_handler(run: Callable[[argparse.Namespace], int | None]) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        status = run(args)
        return status if isinstance(status, int) else EXIT_OK

    return handler


def build_parser(demo: DemoHooks | None = None) -> argparse.ArgumentParser:
    """The argument parser; ``demo`` (from :func:`load_demo`) defines the ``demo`` command."""
    parser = Parser(
        prog="sessionwarden",
        description="Inspect and end server-side sessions, purge expired ones, run the demo.",
        epilog="Exit status: 0 done, 1 nothing matched, 2 usage error, 3 store unavailable, "
        "4 cannot listen (demo: port in use).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    store_opts = Parser(add_help=False)
    store_opts.add_argument(
        "--store",
        metavar="URL",
        help="sqlite:///path.db, redis://host:port/db?prefix=... or"
        f" postgresql://user@host:port/db?table=... (default: ${ENV_STORE})",
    )
    store_opts.add_argument("--json", action="store_true", help="print JSON")
    user_opt = Parser(add_help=False)
    user_opt.add_argument("--user", required=True, type=_user_arg, help="the user ID")

    sessions = commands.add_parser("sessions", help="list, revoke, purge, count sessions")
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser(
        "list",
        parents=[store_opts],
        help="a user's live sessions, oldest first, or every user's (--all), page by page",
    )
    whose = p.add_mutually_exclusive_group(required=True)
    whose.add_argument("--user", type=_user_arg, help="the user ID")
    whose.add_argument("--all", action="store_true", help="every signed-in session, paged")
    p.add_argument(
        "--limit", type=_page_size, help="sessions per page with --all (default 50, at most 1000)"
    )
    p.add_argument(
        "--after", metavar="CURSOR", type=_cursor_arg, help="the next page, as the last printed"
    )
    p.set_defaults(handler=_with_store(cmd_list))

    p = actions.add_parser(
        "revoke", parents=[user_opt, store_opts], help="end one or all sessions of a user"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every session of the user")
    which.add_argument("--session", metavar="REF", type=_ref_arg, help="one session by reference")
    p.add_argument(
        "--tombstone-ttl",
        metavar="SECONDS",
        type=_seconds,
        default=DEFAULT_TOMBSTONE_TTL,
        help="how long a revoked ID is remembered so a replay is reported "
        f"(default {DEFAULT_TOMBSTONE_TTL:g}: the default absolute timeout)",
    )
    p.set_defaults(handler=_with_store(cmd_revoke))

    p = actions.add_parser(
        "purge", parents=[store_opts], help="delete expired sessions, tombstones and aliases"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=1000, help="items per step (default 1000)"
    )
    p.set_defaults(handler=_with_store(cmd_purge))

    p = actions.add_parser("stats", parents=[store_opts], help="count what the store holds")
    p.set_defaults(handler=_with_store(cmd_stats))

    p = actions.add_parser(
        "activity", parents=[user_opt, store_opts], help="the activity trail of one session"
    )
    p.add_argument("--session", metavar="REF", type=_ref_arg, required=True)
    p.set_defaults(handler=_with_store(cmd_activity))

    p = commands.add_parser(
        "migrate", parents=[store_opts], help="bring data of earlier versions up to date"
    )
    p.add_argument(
        "--batch", type=_positive_int, default=1000, help="items per step (default 1000)"
    )
    p.set_defaults(handler=_with_store(cmd_migrate))

    store = commands.add_parser("store", help="prepare a store")
    store_actions = store.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = store_actions.add_parser(
        "init", parents=[store_opts], help="create or migrate the schema (PostgreSQL)"
    )
    p.set_defaults(handler=cmd_store_init)

    p = commands.add_parser("demo", help="run the demo application (sessionwarden[demo])")
    if demo is not None:
        demo.add_arguments(p)
        p.set_defaults(handler=_demo_handler(demo.run))

    p = commands.add_parser("version", help="print the version")
    p.set_defaults(handler=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    try:
        demo = load_demo() if args_list[:1] == ["demo"] else None
        parser = build_parser(demo)
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help, or a usage error argparse has already printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        handler: Handler = args.handler
        return handler(args)
    except CliError as exc:
        return report(exc)
    except StoreUnavailable as exc:
        return report(CliError(EXIT_UNAVAILABLE, f"store unavailable: {exc}"))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
