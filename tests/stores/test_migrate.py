"""``sessionwarden migrate``: brings what an earlier version wrote to the store's current
layout, keeps every session readable, and is idempotent (a second run changes nothing)."""

from __future__ import annotations

import json
import secrets
import sqlite3
from pathlib import Path

import pytest

from sessionwarden.cli import main
from sessionwarden.records import SessionRecord
from sessionwarden.stores.base import migrate_store
from sessionwarden.stores.memory import MemoryStore
from sessionwarden.stores.sqlite import SQLiteStore
from sessionwarden.stores.sqlite_rows import row_id

from ..conftest import drop_prefix, redis_or_skip, unique_prefix

T0 = 1_700_000_000.0
HOUR = 3600.0


def rec(key: str) -> SessionRecord:
    return SessionRecord(
        key=key,
        created_at=T0,
        last_seen=T0,
        expires_at=T0 + HOUR,
        rotated_at=T0,
        csrf_secret="csrf",
        user_id="alice",
        data={"n": 1},
    )


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    status = main(list(argv))
    return status, capsys.readouterr().out


def test_migrate_command_on_sqlite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    keys = [secrets.token_hex(32) for _ in range(3)]
    store = SQLiteStore(path, read_cache=0)
    try:
        for key in keys:
            store.insert(rec(key), max_per_user=0, tombstone_until=T0 + HOUR)
    finally:
        store.close()
    with sqlite3.connect(path) as raw:  # two rows as an earlier version wrote them
        for n, key in enumerate(keys[:2]):
            raw.execute("UPDATE items SET rowid = ? WHERE key = ?", (n + 1, key))
    url = f"sqlite:///{path}"
    assert run(capsys, "migrate", "--store", url) == (
        0,
        "migrated 2 items to the current layout\n",
    )
    status, out = run(capsys, "migrate", "--store", url, "--json", "--batch", "1")
    assert status == 0 and json.loads(out) == {"migrated": 0}
    with sqlite3.connect(path) as raw:
        rows = dict(raw.execute("SELECT key, rowid FROM items").fetchall())
    assert rows == {key: row_id(key) for key in keys}
    store = SQLiteStore(path, read_cache=0)
    try:
        assert [store.get(key) for key in keys] == [rec(key) for key in keys]
    finally:
        store.close()


def test_a_store_without_earlier_layouts_has_nothing_to_migrate() -> None:
    store = MemoryStore()
    store.insert(rec("k"), max_per_user=0, tombstone_until=T0)
    assert migrate_store(store) == 0
    assert store.get("k") == rec("k")


def test_migrate_needs_a_store(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["migrate", "--store", f"sqlite:///{tmp_path / 'absent.db'}"]) == 3
    assert main(["migrate", "--store", "memory://"]) == 2
    assert not (tmp_path / "absent.db").exists()


def test_migrate_command_on_redis(capsys: pytest.CaptureFixture[str]) -> None:
    """An earlier version's Redis layout: a user index holding the key as is (scored by
    created_at), fingerprint traits under ``f:<name>``. Read correctly before; rewritten once;
    and what is written afterwards leaves nothing of the old fields behind."""
    url = redis_or_skip()
    import redis

    from sessionwarden.records import RecordUpdate
    from sessionwarden.stores.redis import RedisStore

    prefix = unique_prefix()
    admin = redis.Redis.from_url(url)
    store = RedisStore(url, prefix=prefix, read_cache_ttl=0)
    try:
        key = secrets.token_hex(32)
        record = rec(key)
        record = SessionRecord.from_parts(
            key, {**record.meta(), "fingerprint": {"ua": "Firefox", "uav": 128}}, record.data
        )
        store.insert(record, max_per_user=5, tombstone_until=T0 + HOUR)
        skey, ukey = f"{prefix}s:{key}", f"{prefix}u:alice"
        packed = b"\xff" + bytes.fromhex(key)
        admin.hdel(skey, "2", "3")  # as an earlier version wrote them
        admin.hset(skey, mapping={"f:ua": '"Firefox"', "f:uav": "128"})
        admin.zadd(ukey, {key: T0})
        admin.zrem(ukey, packed)
        assert admin.pttl(ukey) > 0
        assert store.get(key) == record
        assert store.user_sessions("alice") == [record]

        status = main(["migrate", "--store", f"{url}?prefix={prefix}"])
        assert (status, capsys.readouterr().out) == (0, "migrated 2 items to the current layout\n")
        assert store.migrate() == 0  # idempotent
        fields = {k.decode() for k in admin.hkeys(skey)}
        assert {"2", "3"} <= fields and not {"f:ua", "f:uav"} & fields
        assert admin.zrange(ukey, 0, -1, withscores=True) == [(packed, 0.0)]
        assert admin.pttl(ukey) > 0  # the index kept its expiry
        assert store.get(key) == record

        assert store.update(key, RecordUpdate(meta={"fingerprint": {"ua": "Chrome"}}))
        found = store.get(key)
        assert isinstance(found, SessionRecord) and found.fingerprint == {"ua": "Chrome"}
        store.delete(key)
        assert store.user_sessions("alice") == [] and admin.zcard(ukey) == 0
    finally:
        store.close()
        admin.close()
        drop_prefix(prefix)


def test_a_hash_reads_alike_in_any_field_order_and_with_fields_it_does_not_know() -> None:
    """The decoding alone (no Redis): a trait's own field (``2``) wins over ``f:ua`` whichever
    comes first, and a field this version does not know (here not even JSON) is ignored, with
    and without the store's remembered values."""
    from sessionwarden.stores.redis_layout import Scalars, decode, record_fields

    key = secrets.token_hex(32)
    base = rec(key)
    record = SessionRecord.from_parts(
        key, {**base.meta(), "fingerprint": {"ua": "Chrome", "tz": "UTC"}}, base.data
    )
    flat = record_fields(record)
    fields = {str(name): value for name, value in zip(flat[::2], flat[1::2], strict=True)}
    older = {"f:ua": '"Firefox"'}
    unknown = {"zz": b"\xff{ not json"}
    scalars = Scalars()
    for hash_ in ({**fields, **older, **unknown}, {**unknown, **older, **fields}):
        assert decode(key, hash_) == record
        assert decode(key, hash_, scalars) == record
        assert decode(key, hash_, scalars) == record  # the second time from what it remembered


def test_a_trait_s_own_field_wins_over_an_earlier_version_s(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before migrating: a record holding both ``f:ua`` (left by an earlier version) and ``2``
    (written since) reads ``2``, whatever order Redis returns them in."""
    url = redis_or_skip()
    import redis

    from sessionwarden.stores.redis import RedisStore

    prefix = unique_prefix()
    admin = redis.Redis.from_url(url)
    store = RedisStore(url, prefix=prefix, read_cache_ttl=0)
    try:
        key = secrets.token_hex(32)
        base = rec(key)
        record = SessionRecord.from_parts(
            key, {**base.meta(), "fingerprint": {"ua": "Chrome"}}, base.data
        )
        store.insert(record, max_per_user=0, tombstone_until=T0 + HOUR)
        admin.hset(f"{prefix}s:{key}", "f:ua", '"Firefox"')
        assert store.get(key) == record
        assert main(["migrate", "--store", f"{url}?prefix={prefix}", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"migrated": 1}
        assert store.get(key) == record
        assert not admin.hexists(f"{prefix}s:{key}", "f:ua")
    finally:
        store.close()
        admin.close()
        drop_prefix(prefix)
