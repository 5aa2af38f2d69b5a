"""The ``sessionwarden`` command line against a real SQLite file and the real Redis server.

Sessions are created through the engine (as a browser would get them); the CLI then runs in this
process through ``main([...])``, once in a subprocess through ``python -m sessionwarden.cli``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sessionwarden import cli
from sessionwarden.cli import main
from sessionwarden.clock import ManualClock
from sessionwarden.core import Engine, run_sync
from sessionwarden.events import Event, EventKind
from sessionwarden.policy import Policy, RememberPolicy
from sessionwarden.stores.base import SessionStore

from .conftest import (
    SECRET,
    drop_prefix,
    postgres_database,
    postgres_table,
    redis_or_skip,
    unique_prefix,
    unique_table,
)
from .test_engine import Client, login

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Target:
    url: str
    store: SessionStore


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "sqlite":
        from sessionwarden.stores.sqlite import SQLiteStore

        path = tmp_path / "sessions.db"
        store = SQLiteStore(path)
        yield Target(f"sqlite:///{path}", store)
        store.close()
    elif request.param == "postgres":
        from sessionwarden.stores.postgres import PostgresStore

        url, table = postgres_table()
        pstore = PostgresStore(url, table=table)
        yield Target(f"{url}?table={table}", pstore)
        pstore.close()
    else:
        url = redis_or_skip()
        from sessionwarden.stores.redis import RedisStore

        prefix = unique_prefix()
        rstore = RedisStore(url, prefix=prefix)
        try:
            yield Target(f"{url}?prefix={prefix}", rstore)
        finally:
            rstore.close()
            drop_prefix(prefix)


@dataclass
class World:
    """Two sessions of alice (Firefox, curl) and one of bob, all live in real time."""

    engine: Engine
    clock: ManualClock
    alice_ff: Client
    alice_curl: Client
    bob: Client
    refs: dict[str, str]


def _engine(start: float, clock: ManualClock | None = None) -> Engine:
    policy = Policy(secret_keys=(SECRET,), idle_timeout=1800.0)
    return Engine(policy, clock=clock or ManualClock(start))


@pytest.fixture
def world(target: Target) -> World:
    clock = ManualClock(time.time())
    engine = _engine(0, clock)
    refs: dict[str, str] = {}
    clients: dict[str, Client] = {}
    for name, user, ua, ip in [
        ("alice_ff", "alice", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0", "198.51.100.7"),
        ("alice_curl", "alice", "curl/8.5.0", "203.0.113.9"),
        ("bob", "bob", "Mozilla/5.0 Safari/605.1.15", "192.0.2.44"),
    ]:
        client = Client(engine, target.store, ua=ua, ip=ip)
        refs[name] = login(client, user).ref
        clients[name] = client
    return World(engine, clock, clients["alice_ff"], clients["alice_curl"], clients["bob"], refs)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def signed_in(client: Client) -> bool:
    session, _ = client.begin()
    return session.user_id is not None


def assert_no_secrets(text: str, *clients: Client) -> None:
    """No raw session ID, and no full store key either (only 16-digit references)."""
    for client in clients:
        for cookie in client.history:
            assert cookie not in text
            assert client.engine.keyring.hash_id(cookie) not in text


# -- times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (1_700_000_000, "2023-11-14T22:13:20Z"),
        (-1.5, "1969-12-31T23:59:58Z"),
        # Within half a microsecond of the next second: that second, as the event's time says.
        (1_796_532_592.999_999_7, "2026-12-06T04:49:53Z"),
        (1_796_532_592.999_999_2, "2026-12-06T04:49:52Z"),
        (253_402_300_799.9, "9999-12-31T23:59:59Z"),
        *((junk, "-") for junk in (None, True, "1700000000", float("nan"), float("inf"), 1e20)),
    ],
)
def test_a_time_in_a_table_is_the_events_time_to_the_second(value: object, cell: str) -> None:
    """The tables spell a stored time as the events' ``time`` does, without the fraction; a
    value that is no time (written by hand or by another program) is ``-``."""
    assert cli._time_cell(value) == cell
    if cell != "-":
        assert isinstance(value, int | float)
        spelled = Event(EventKind.CREATED, value).time
        assert spelled is not None and spelled[:19] + "Z" == cell


# -- list -----------------------------------------------------------------------------------------


def test_list_table(capsys: pytest.CaptureFixture[str], target: Target, world: World) -> None:
    status, out, err = run(capsys, "sessions", "list", "--user", "alice", "--store", target.url)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        *("REF", "CREATED", "LAST", "SEEN", "EXPIRES", "IP", "BOUND", "USER", "AGENT")
    ]
    assert len(lines) == 3
    assert all(line.split()[5] == "no" for line in lines[1:])  # neither is device-bound
    assert world.refs["alice_ff"] in out and world.refs["alice_curl"] in out
    assert world.refs["bob"] not in out
    assert "198.51.100.7" in out and "curl/8.5.0" in out
    assert "Mozilla/5.0 (X11; Linux x86_64) Firef..." in out  # long user agents are truncated
    assert len(ISO.findall(lines[1])) == 3
    assert_no_secrets(out, world.alice_ff, world.alice_curl)


def test_list_json(capsys: pytest.CaptureFixture[str], target: Target, world: World) -> None:
    status, out, _ = run(
        capsys, "sessions", "list", "--user", "alice", "--store", target.url, "--json"
    )
    assert status == 0
    rows = json.loads(out)
    assert {r["ref"] for r in rows} == {world.refs["alice_ff"], world.refs["alice_curl"]}
    for row in rows:
        assert set(row) == {"ref", "user", "created_at", "last_seen", "expires_at", "ip", "ua"} | {
            "current",
            "device_bound",
            "remembered",
        }
        assert row["user"] == "alice" and row["current"] is False
        assert row["device_bound"] is False
        assert row["expires_at"] > time.time()
    assert_no_secrets(out, world.alice_ff, world.alice_curl)


def test_list_unknown_user(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    status, out, _ = run(capsys, "sessions", "list", "--user", "carol", "--store", target.url)
    assert status == 0 and "no live sessions" in out
    status, out, _ = run(
        capsys, "sessions", "list", "--user", "carol", "--store", target.url, "--json"
    )
    assert status == 0 and json.loads(out) == []


def test_list_escapes_terminal_control_characters(
    capsys: pytest.CaptureFixture[str], target: Target
) -> None:
    evil = Client(_engine(time.time()), target.store, ua="x\x1b]0;owned\x07\x1b[2J\u202eevil")
    login(evil, "mallory")
    status, out, _ = run(capsys, "sessions", "list", "--user", "mallory", "--store", target.url)
    assert status == 0
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "x?]0;owned??[2J?evil" in out
    status, out, _ = run(
        capsys, "sessions", "list", "--user", "mallory", "--store", target.url, "--json"
    )
    assert "\x1b" not in out and json.loads(out)[0]["ua"].startswith("x\x1b]0;owned")


SUMMARY = re.compile(r"(\d+) (sessions?)(?:; next page: --after (\S+))?")


def _all_pages(
    capsys: pytest.CaptureFixture[str], target: Target, limit: int
) -> list[tuple[list[list[str]], str]]:
    """``sessions list --all`` page by page: each page's table rows (split) and summary."""
    pages: list[tuple[list[list[str]], str]] = []
    after: list[str] = []
    for _ in range(100):
        argv = ["sessions", "list", "--all", "--limit", str(limit), "--store", target.url]
        status, out, err = run(capsys, *argv, *after)
        assert status == 0 and err == ""
        lines = out.splitlines()
        summary = SUMMARY.fullmatch(lines[-1])
        assert summary is not None, lines[-1]
        count, noun, cursor = summary.groups()
        assert noun == ("session" if count == "1" else "sessions")  # the plural is right
        rows = [line.split() for line in lines[1:-1]]
        assert len(rows) == int(count)
        if rows:
            assert lines[0].split() == [
                *("REF", "USER", "CREATED", "LAST", "SEEN", "EXPIRES", "IP", "BOUND"),
                *("USER", "AGENT"),
            ]
        pages.append((rows, lines[-1]))
        if cursor is None:
            return pages
        after = ["--after", cursor]
    raise AssertionError("the pages never ended")


def test_list_all_pages_through_every_users_sessions(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    from sessionwarden.records import SessionRecord

    now = time.time()
    anonymous = SessionRecord(
        key="ab" * 32,
        created_at=now,
        last_seen=now,
        expires_at=now + 600,
        rotated_at=now,
        csrf_secret="x" * 43,
    )
    target.store.insert(anonymous, max_per_user=0, tombstone_until=now + 600)
    login(Client(world.engine, target.store, ua="Edge/120", ip="192.0.2.80"), "carol")
    argv = ["sessions", "revoke", "--user", "carol", "--all", "--store", target.url]
    assert run(capsys, *argv)[0] == 0  # revoked: never listed
    pages = _all_pages(capsys, target, 2)
    rows = [row for page, _ in pages for row in page]
    by_ref = {row[0]: row for row in rows}
    assert set(by_ref) == set(world.refs.values())
    assert all(len(ref) == 16 for ref in by_ref)  # the same references as `list --user`
    assert by_ref[world.refs["bob"]][1] == "bob" and by_ref[world.refs["alice_ff"]][1] == "alice"
    assert by_ref[world.refs["alice_curl"]][6:] == ["no", "curl/8.5.0"]
    if not target.url.startswith("redis"):  # by key: two pages, exactly once
        assert len(rows) == 3
        assert [summary.split(";")[0] for _, summary in pages] == ["2 sessions", "1 session"]
    printed = "\n".join(summary for _, summary in pages)
    assert_no_secrets(printed, world.alice_ff, world.alice_curl, world.bob)


def test_list_all_json_pages(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    seen: list[str] = []
    after: list[str] = []
    for _ in range(100):
        argv = ["sessions", "list", "--all", "--limit", "1", "--json", "--store", target.url]
        status, out, _ = run(capsys, *argv, *after)
        assert status == 0
        page = json.loads(out)
        assert set(page) == {"sessions", "next"}
        seen += [row["ref"] for row in page["sessions"]]
        assert all(row["expires_at"] > time.time() for row in page["sessions"])
        if page["next"] is None:
            break
        after = ["--after", page["next"]]
    assert set(seen) == set(world.refs.values())
    if not target.url.startswith("redis"):
        assert len(seen) == 3
    assert_no_secrets(out, world.alice_ff, world.alice_curl, world.bob)


def test_list_all_of_an_empty_store(capsys: pytest.CaptureFixture[str], target: Target) -> None:
    status, out, _ = run(capsys, "sessions", "list", "--all", "--store", target.url)
    assert status == 0 and out == "no live signed-in sessions\n"
    status, out, _ = run(capsys, "sessions", "list", "--all", "--json", "--store", target.url)
    assert status == 0 and json.loads(out) == {"sessions": [], "next": None}


def test_list_all_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from sessionwarden.stores.sqlite import SQLiteStore

    SQLiteStore(tmp_path / "s.db").close()
    url = f"sqlite:///{tmp_path / 's.db'}"
    for argv in (
        ["--all", "--user", "alice"],
        ["--all", "--limit", "0"],
        ["--all", "--limit", "1001"],
        ["--all", "--after", "nonsense"],
        ["--all", "--after", "k:"],
        ["--user", "alice", "--limit", "5"],
        ["--user", "alice", "--after", "k:0011223344556677"],
    ):
        status, out, err = run(capsys, "sessions", "list", *argv, "--store", url)
        assert status == 2 and out == "" and err.startswith("sessionwarden: error: "), argv
        assert err.count("\n") == 1, argv


# -- revoke ---------------------------------------------------------------------------------------


def test_revoke_one_by_ref(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    ref = world.refs["alice_ff"]
    status, out, _ = run(
        capsys,
        "sessions",
        "revoke",
        "--user",
        "alice",
        "--session",
        ref[:10],
        "--store",
        target.url,
    )
    assert status == 0
    assert ref in out and "revoked 1 session" in out
    assert_no_secrets(out, world.alice_ff)
    assert not signed_in(world.alice_ff)
    assert signed_in(world.alice_curl)
    assert signed_in(world.bob)
    # The same reference again: nothing left to revoke.
    status, out, err = run(
        capsys, "sessions", "revoke", "--user", "alice", "--session", ref, "--store", target.url
    )
    assert status == 1 and out == "" and "nothing revoked" in err


def test_revoke_needs_the_right_user(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    status, out, _ = run(
        capsys,
        "sessions",
        "revoke",
        "--user",
        "bob",
        "--session",
        world.refs["alice_ff"],
        "--store",
        target.url,
        "--json",
    )
    assert status == 1 and json.loads(out) == {"user": "bob", "revoked": []}
    assert signed_in(world.alice_ff)


def test_revoke_all(capsys: pytest.CaptureFixture[str], target: Target, world: World) -> None:
    status, out, _ = run(
        capsys, "sessions", "revoke", "--user", "alice", "--all", "--store", target.url, "--json"
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["user"] == "alice"
    assert sorted(doc["revoked"]) == sorted([world.refs["alice_ff"], world.refs["alice_curl"]])
    assert not signed_in(world.alice_ff)
    assert not signed_in(world.alice_curl)
    assert signed_in(world.bob)
    infos = run_sync(world.engine.list_sessions("alice"), target.store)
    assert infos == []
    status, _, err = run(
        capsys, "sessions", "revoke", "--user", "alice", "--all", "--store", target.url
    )
    assert status == 1 and "nothing revoked" in err


def test_revoke_rejects_malformed_ref(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    for bad in ("zz", "1234567", "not-hex-at-all", world.refs["bob"] + "x"):
        status, _, err = run(
            capsys, "sessions", "revoke", "--user", "bob", "--session", bad, "--store", target.url
        )
        assert status == 2 and "8 to 64 hex digits" in err
    assert signed_in(world.bob)


# -- purge and stats ------------------------------------------------------------------------------


def test_purge_removes_expired_only(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    # Sessions made ten hours ago with a 30-minute idle timeout: expired in real time.
    old = _engine(time.time() - 10 * 3600)
    stale = [Client(old, target.store, ua=f"old/{i}") for i in range(3)]
    for i, client in enumerate(stale):
        login(client, f"gone{i}")
    status, out, _ = run(capsys, "sessions", "purge", "--store", target.url, "--json")
    assert status == 0
    assert json.loads(out)["removed"] >= 3
    for i in range(3):
        assert target.store.user_sessions(f"gone{i}") == []
    # Live sessions are untouched.
    assert signed_in(world.alice_ff) and signed_in(world.bob)
    status, out, _ = run(capsys, "sessions", "purge", "--store", target.url, "--batch", "2")
    assert status == 0 and out == "purged 0 expired items\n"


def test_stats(capsys: pytest.CaptureFixture[str], target: Target, world: World) -> None:
    status, out, _ = run(capsys, "sessions", "stats", "--store", target.url, "--json")
    assert status == 0
    assert json.loads(out) == {"live_sessions": 3, "users": 2, "tombstones": 0, "aliases": 0}
    run(capsys, "sessions", "revoke", "--user", "bob", "--all", "--store", target.url)
    status, out, _ = run(capsys, "sessions", "stats", "--store", target.url)
    assert status == 0
    assert out.splitlines() == [
        "live sessions  2",
        "users          1",
        "tombstones     1",
        "aliases        0",
    ]


# -- activity -------------------------------------------------------------------------------------


def test_activity(capsys: pytest.CaptureFixture[str], target: Target, world: World) -> None:
    for _ in range(2):  # two touches: two activity entries
        world.clock.advance(120)
        world.alice_curl.request()
    ref = world.refs["alice_curl"]
    status, out, _ = run(
        capsys,
        "sessions",
        "activity",
        "--user",
        "alice",
        "--session",
        ref,
        "--store",
        target.url,
        "--json",
    )
    assert status == 0
    doc = json.loads(out)
    assert doc["ref"] == ref and doc["user"] == "alice"
    assert len(doc["activity"]) >= 2
    assert all(e["ua"] == "curl/8.5.0" and e["ip"] == "203.0.113.9" for e in doc["activity"])
    status, out, _ = run(
        capsys, "sessions", "activity", "--user", "alice", "--session", ref, "--store", target.url
    )
    assert status == 0
    assert out.startswith(f"session {ref} of user 'alice'")
    assert "TIME" in out and "curl/8.5.0" in out and "GET" in out and ISO.search(out)
    assert_no_secrets(out, world.alice_curl)


def test_activity_unknown_session(
    capsys: pytest.CaptureFixture[str], target: Target, world: World
) -> None:
    status, out, err = run(
        capsys,
        "sessions",
        "activity",
        "--user",
        "alice",
        "--session",
        world.refs["bob"],
        "--store",
        target.url,
    )
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "has no session" in err


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "sqlite://host/x.db",
        "redis:///0",
        "redis://127.0.0.1:6379/notanumber",
        "redis://127.0.0.1:notaport/0",
        "postgresql://h/db%zz",
        "memory://",
        "nonsense",
    ],
)
def test_bad_url_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], url: str) -> None:
    status, out, err = run(capsys, "sessions", "stats", "--store", url)
    assert status == 2 and out == ""
    assert err.startswith("sessionwarden: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_missing_sqlite_file_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "typo.db"
    status, _, err = run(capsys, "sessions", "list", "--user", "a", "--store", f"sqlite:///{path}")
    assert status == 3 and "no SQLite file" in err and err.count("\n") == 1
    assert not path.exists()


def test_unreachable_redis_exit_3_quickly(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    status, out, err = run(capsys, "sessions", "stats", "--store", "redis://127.0.0.1:1/0")
    assert time.monotonic() - started < 5
    assert status == 3 and out == ""
    assert err.startswith("sessionwarden: error: store unavailable") and err.count("\n") == 1


def test_sentinels_that_name_no_master_are_one_short_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"redis+sentinel://:hunter2secret@127.0.0.1:{port}/mymaster"
    status, out, err = run(capsys, "sessions", "stats", "--store", url)
    assert status == 3 and out == "" and err.count("\n") == 1
    assert f"redis sentinels 127.0.0.1:{port} service 'mymaster': no master known" in err
    assert "<redis" not in err and "hunter2secret" not in err


def test_the_async_sentinel_check_names_the_cause_too() -> None:
    import asyncio

    from sessionwarden.stores import open_async_store
    from sessionwarden.stores.base import StoreUnavailable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def check() -> str:
        store = open_async_store(f"redis+sentinel://127.0.0.1:{port}/mymaster")
        try:
            with pytest.raises(StoreUnavailable, match="no master known") as caught:
                await store.check()
            return str(caught.value)
        finally:
            await store.close()

    assert "<redis" not in asyncio.run(check())


def test_redis_password_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys, "sessions", "stats", "--store", "redis://:hunter2secret@127.0.0.1:1/0"
    )
    assert status == 3 and "hunter2secret" not in err


def test_store_from_environment(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    target: Target,
    world: World,
) -> None:
    monkeypatch.setenv(cli.ENV_STORE, target.url)
    status, out, _ = run(capsys, "sessions", "stats", "--json")
    assert status == 0 and json.loads(out)["live_sessions"] == 3
    monkeypatch.delenv(cli.ENV_STORE)
    status, _, err = run(capsys, "sessions", "stats")
    assert status == 2 and cli.ENV_STORE in err and err.count("\n") == 1


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "sessions", "revoke", "--user", "a", "--store", "sqlite:///x.db")[0] == 2
    assert run(capsys, "sessions", "list", "--store", "sqlite:///x.db")[0] == 2
    assert run(capsys, "sessions", "purge", "--batch", "0", "--store", "sqlite:///x.db")[0] == 2
    assert run(capsys)[0] == 2
    assert run(capsys, "--help")[0] == 0


# -- demo and version -----------------------------------------------------------------------------


def test_demo_unavailable_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever state the demo package is in, a failing import is reported in one line.
    monkeypatch.setitem(sys.modules, "sessionwarden.demo.cli", None)
    status, out, err = run(capsys, "demo", "--port", "8000")
    assert status == 2 and out == ""
    assert "demo is not available" in err and "sessionwarden[demo]" in err
    assert err.count("\n") == 1


def test_demo_delegates_to_demo_module(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import types

    seen: dict[str, object] = {}

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=8000)

    def run_demo(args: argparse.Namespace) -> int:
        seen["port"] = args.port
        return 0

    fake = types.ModuleType("sessionwarden.demo.cli")
    fake.add_arguments = add_arguments  # type: ignore[attr-defined]
    fake.run = run_demo  # type: ignore[attr-defined]
    monkeypatch.setattr(cli, "importlib", types.SimpleNamespace(import_module=lambda *a: fake))
    assert run(capsys, "demo", "--port", "9123")[0] == 0
    assert seen == {"port": 9123}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionwarden import __version__

    assert run(capsys, "version") == (0, f"sessionwarden {__version__}\n", "")


# -- as a program ---------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["sessionwarden.cli", "sessionwarden"])
def test_python_dash_m_stats(tmp_path: Path, module: str) -> None:
    from sessionwarden.stores.sqlite import SQLiteStore

    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    login(Client(_engine(time.time()), store), "alice")
    store.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            "sessions",
            "stats",
            "--store",
            f"sqlite:///{path}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "live sessions  1"
    bad = subprocess.run(
        [sys.executable, "-m", module, "sessions", "stats", "--store", "bogus://"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_list_shows_device_bound_sessions(
    capsys: pytest.CaptureFixture[str], target: Target
) -> None:
    from sessionwarden.dbsc_state import DbscState
    from sessionwarden.records import SessionRecord

    now = time.time()
    bound = DbscState(session_identifier="s1", alg="ES256", jwk={"kty": "EC"}).to_json()
    offered = DbscState(challenges=(("0" * 64, now + 60),)).to_json()  # offered, never bound
    for digit, dbsc in (("a", bound), ("b", offered), ("c", None)):
        record = SessionRecord(
            key=digit * 64,
            created_at=now,
            last_seen=now,
            expires_at=now + 600,
            rotated_at=now,
            csrf_secret="x" * 43,
            user_id="carol",
            dbsc=dbsc,
        )
        target.store.insert(record, max_per_user=0, tombstone_until=now + 600)
    status, out, _ = run(capsys, "sessions", "list", "--user", "carol", "--store", target.url)
    assert status == 0
    bound_of = {line.split()[0][0]: line.split()[5] for line in out.splitlines()[1:]}
    assert bound_of == {"a": "yes", "b": "no", "c": "no"}
    _, out, _ = run(capsys, "sessions", "list", "--user", "carol", "--store", target.url, "--json")
    assert sorted(r["device_bound"] for r in json.loads(out)) == [False, False, True]


def test_ambiguous_ref_revokes_nothing(capsys: pytest.CaptureFixture[str], target: Target) -> None:
    from sessionwarden.records import SessionRecord

    now = time.time()
    keys = ["deadbeef" + "0" * 56, "deadbeef" + "1" * 56]
    for key in keys:
        record = SessionRecord(
            key=key,
            created_at=now,
            last_seen=now,
            expires_at=now + 600,
            rotated_at=now,
            csrf_secret="x" * 43,
            user_id="amb",
        )
        target.store.insert(record, max_per_user=0, tombstone_until=now + 600)
    argv = ["sessions", "revoke", "--user", "amb", "--store", target.url, "--session"]
    status, out, err = run(capsys, *argv, "deadbeef")
    assert status == 1 and out == "" and "matches 2 sessions" in err
    assert len(target.store.user_sessions("amb")) == 2
    status, out, _ = run(capsys, *argv, "deadbeef1")
    assert status == 0 and "deadbeef11111111" in out
    assert [r.key for r in target.store.user_sessions("amb")] == [keys[0]]


# -- store init -----------------------------------------------------------------------------------


def test_store_init_creates_the_postgres_schema_once(capsys: pytest.CaptureFixture[str]) -> None:
    from sessionwarden.stores.postgres import PostgresStore

    url, table = postgres_database(), unique_table()
    store_url = f"{url}?table={table}"
    assert run(capsys, "sessions", "stats", "--store", store_url)[0] == 3  # no tables yet
    status, out, _ = run(capsys, "store", "init", "--store", store_url)
    assert (status, out) == (0, f"table '{table}': schema version 1 (created)\n")
    status, out, _ = run(capsys, "store", "init", "--json", "--store", store_url)
    assert status == 0 and json.loads(out)["done"] == "up to date"
    store = PostgresStore(url, table=table)
    try:
        store.check()
    finally:
        store.close()
    status, out, _ = run(capsys, "sessions", "stats", "--json", "--store", store_url)
    assert status == 0 and json.loads(out)["live_sessions"] == 0


def test_store_init_fails_closed_without_leaking_the_url(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://u:s3cret@127.0.0.1:{port}/db"
    status, out, err = run(capsys, "store", "init", "--store", url)
    assert status == 3 and out == ""
    assert "store unavailable" in err and "s3cret" not in err and str(port) not in err


def test_unreachable_postgres_is_one_line_naming_the_cause_at_once() -> None:
    """The pool only logs why it cannot connect, and waits out its timeout: the CLI says so in
    one line, without the URL, and does not wait for a refused connection."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    url = f"postgresql://u:s3cret@127.0.0.1:{port}/db"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "sessionwarden.cli", "sessions", "stats", "--store", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert time.monotonic() - started < 10  # not the start-up check's 15 s of patience
    assert done.returncode == 3 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("sessionwarden: error: store unavailable: PostgreSQL")
    assert "cannot connect" in done.stderr
    assert "s3cret" not in done.stderr and str(port) not in done.stderr


def test_a_postgres_database_that_does_not_exist_is_named_as_a_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = postgres_database().rsplit("/", 1)[0] + "/swtest_no_such_database"
    status, out, err = run(capsys, "sessions", "stats", "--store", url)
    assert status == 3 and out == ""
    assert "cannot connect" in err and "no such database" in err


def test_store_init_refuses_a_malformed_postgres_url_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, err = run(capsys, "store", "init", "--store", "postgresql://%zz@h/db")
    assert status == 2 and out == ""
    assert err.startswith("sessionwarden: error: store URL: ") and err.count("\n") == 1


def test_a_postgres_url_without_a_host_reaches_the_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """postgresql:///db (libpq's default host) with the host as a parameter, as libpq reads it."""
    from psycopg.conninfo import conninfo_to_dict

    url, table = postgres_table()
    params = conninfo_to_dict(url)
    hostless = (
        f"postgresql:///{params['dbname']}?host={params.get('host', '127.0.0.1')}"
        f"&port={params.get('port', '5432')}&user={params.get('user', 'postgres')}&table={table}"
    )
    status, out, _ = run(capsys, "sessions", "stats", "--json", "--store", hostless)
    assert status == 0 and json.loads(out)["live_sessions"] == 0


def test_store_init_has_nothing_to_do_for_sqlite(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = run(capsys, "store", "init", "--store", f"sqlite:///{tmp_path}/s.db")
    assert status == 0 and out.startswith("nothing to do")


def test_store_init_json_when_there_is_nothing_to_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, _ = run(capsys, "store", "init", "--json", "--store", f"sqlite:///{tmp_path}/s")
    assert status == 0 and json.loads(out) == {"store": "sqlite", "done": "nothing to do"}


def test_store_init_names_a_database_that_does_not_exist_as_a_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As ``sessions stats`` does: the server answered, so it is not "unreachable"."""
    url = postgres_database().rsplit("/", 1)[0] + "/swtest_no_such_database"
    status, out, err = run(capsys, "store", "init", "--store", url)
    assert status == 3 and out == ""
    assert "cannot connect" in err and "no such database" in err


def test_tls_to_a_server_that_does_not_answer_it_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rediss://`` to a port whose server never completes the TLS handshake (a plain Redis
    waits for a command, so does this listener): a timeout, with the hint to check TLS."""
    from sessionwarden import startup

    monkeypatch.setattr(startup, "_CHECK_PATIENCE", 0.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # the kernel completes the connection; nothing ever answers
        port = listener.getsockname()[1]
        status, out, err = run(
            capsys, "sessions", "stats", "--store", f"rediss://127.0.0.1:{port}/0"
        )
        plain = run(capsys, "sessions", "stats", "--store", f"redis://127.0.0.1:{port}/0")
    assert status == 3 and out == "" and err.count("\n") == 1
    assert "imeout" in err and "the URL asks for TLS" in err
    assert plain[0] == 3 and "TLS" not in plain[2]


def test_a_demo_key_file_that_cannot_be_read_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory given as ``--secret-file``: one line naming the file, no mode warning."""
    import io

    from sessionwarden.demo.cli import load_secret

    tmp_path.chmod(0o755)
    with pytest.raises(ValueError, match=r"key file .*: cannot read it: Is a directory"):
        load_secret(tmp_path, "memory://", out=io.StringIO())
    assert capsys.readouterr().err == ""


def test_list_json_says_which_sessions_are_remembered(
    capsys: pytest.CaptureFixture[str], target: Target
) -> None:
    """A sign-in with "keep me signed in" is listed like any other, marked ``remembered``."""
    policy = Policy(secret_keys=(SECRET,), remember=RememberPolicy())
    engine = Engine(policy, clock=ManualClock(time.time()))
    kept, plain = Client(engine, target.store), Client(engine, target.store)
    kept.request(lambda s: s.login("dave", remember=True))
    plain.request(lambda s: s.login("dave"))
    status, out, _ = run(
        capsys, "sessions", "list", "--user", "dave", "--store", target.url, "--json"
    )
    assert status == 0
    assert sorted(r["remembered"] for r in json.loads(out)) == [False, True]
