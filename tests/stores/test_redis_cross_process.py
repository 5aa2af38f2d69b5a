"""Writes kept in the local read cache, seen across processes.

A write keeps the record it wrote in the writing process's read cache (``NOLOOP``: Redis does
not announce it back). Every other process must still see it on its next request, and this
process must see theirs: each side here is a separate process with its own store, connections,
notice feed and cache. The reader applies the notices Redis sent before it was asked
(``ReadCache.barrier``, a PING on its feed) instead of waiting an unknown network delay.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionwarden.records import RecordUpdate, SessionRecord
from sessionwarden.stores.redis import RedisStore

from ..conftest import drop_prefix, redis_or_skip, unique_prefix

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
KEY = hashlib.sha256(b"session-cross").hexdigest()

#: The other process: answers "get" with the record's data["n"] (after applying the notices
#: that arrived), "put N" by writing n = N, "count" with the commands its lean connection sent.
_PEER = """
import sys
from sessionwarden.records import RecordUpdate
from sessionwarden.stores.redis import RedisStore

url, prefix, key = sys.argv[1:4]
store = RedisStore(url, prefix=prefix)
assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "get":
        store.read_cache.barrier()
        print(store.get(key).data["n"], flush=True)
    elif cmd == "put":
        print(int(store.update(key, RecordUpdate(set_data={"n": int(arg)}))), flush=True)
    elif cmd == "count":
        print(store._fast.commands_sent, flush=True)
store.close()
"""


class Peer:
    def __init__(self, url: str, prefix: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _PEER, url, prefix, KEY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        )
        assert self.ask("") == "ready"

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def pair() -> Iterator[tuple[RedisStore, Peer]]:
    url = redis_or_skip()
    prefix = unique_prefix()
    store = RedisStore(url, prefix=prefix)
    assert store.read_cache is not None and store.read_cache.feed.wait_connected(5.0)
    now = time.time()
    record = SessionRecord(
        key=KEY,
        created_at=now,
        last_seen=now,
        expires_at=now + 3600,
        rotated_at=now,
        csrf_secret="c" * 43,
        user_id="alice",
        data={"n": 0},
    )
    store.insert(record, max_per_user=0, tombstone_until=now + 60)
    peer = Peer(url, prefix)
    try:
        yield store, peer
    finally:
        peer.close()
        store.close()
        drop_prefix(prefix)


def n_of(store: RedisStore) -> object:
    found = store.get(KEY)
    assert isinstance(found, SessionRecord)
    return found.data["n"]


def test_a_write_in_one_process_is_read_by_the_next_request_in_another(
    pair: tuple[RedisStore, Peer],
) -> None:
    store, peer = pair
    cache = store.read_cache
    assert cache is not None
    assert n_of(store) == 0 and peer.ask("get") == "0"  # both keep the record now
    fast = store._fast
    assert fast is not None
    for n in range(1, 4):
        # This process writes: one script and its fence (a PING); its next read costs none
        # and sees the write.
        sent = fast.commands_sent
        assert store.update(KEY, RecordUpdate(set_data={"n": n}))
        assert n_of(store) == n
        assert fast.commands_sent == sent + 2
        # The other process's next request sees it.
        assert peer.ask("get") == str(n)
        # The other process writes; this one's next request sees that.
        assert peer.ask(f"put {10 * n}") == "1"
        cache.barrier()
        assert n_of(store) == 10 * n


def test_the_other_process_keeps_its_own_write_and_reads_it_without_a_round_trip(
    pair: tuple[RedisStore, Peer],
) -> None:
    _, peer = pair
    assert peer.ask("get") == "0"
    assert peer.ask("put 5") == "1"
    before = int(peer.ask("count"))
    assert peer.ask("get") == "5"
    assert int(peer.ask("count")) == before  # the read after its write: no command
