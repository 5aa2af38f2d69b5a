"""Real Redis Cluster and Sentinel set-ups on loopback ports, for the tests and the benchmarks.

Everything here is started from Debian's ``redis-server`` and ``redis-cli`` as child processes,
each node with its own directory under a temporary one, bound to 127.0.0.1 only, persisting
nothing (``--save "" --appendonly no``). Every process is stopped by its own PID (the
``subprocess.Popen`` handle that started it), never by name: other Redis servers on the machine
are none of our business. An ``atexit`` hook stops whatever is still running when the
interpreter exits.

* :func:`redis_cluster` — 3 masters + 3 replicas (``redis-cli --cluster create ...
  --cluster-replicas 1``) with a short ``cluster-node-timeout`` so a failover takes seconds, and
  ``cluster-require-full-coverage no`` so the masters that are up keep serving their slots while
  another one fails over.
* :func:`redis_sentinel` — 1 master + replicas + 3 sentinels (quorum 2) with a short
  ``down-after-milliseconds``.

Both context managers return once the set-up is healthy: for the cluster, every node reports
``cluster_state:ok`` with all 16384 slots served and every master has a replica in sync; for
Sentinel, every sentinel names the master, knows the other sentinels and the replicas.

Used by ``tests/conftest.py`` (session fixtures) and importable from ``bench/``
(``from tests.cluster_support import redis_cluster``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

__all__ = [
    "Cluster",
    "Node",
    "SentinelSet",
    "ServerMissing",
    "missing_binaries",
    "redis_cluster",
    "redis_sentinel",
]

HOST = "127.0.0.1"
#: Client ports are drawn from this range; a cluster node's bus port is its port + 10000. Both
#: stay below Linux's ephemeral range (32768+), so an outgoing connection never takes them.
PORT_RANGE = (12000, 22000)
BUS_OFFSET = 10000
CLUSTER_SLOTS = 16384


class ServerMissing(RuntimeError):
    """``redis-server`` or ``redis-cli`` is not installed."""


def missing_binaries() -> list[str]:
    """The programs this module needs that are not on ``PATH``."""
    return [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]


# -- ports --------------------------------------------------------------------------------------

_TAKEN: set[int] = set()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, bus: bool = False) -> int:
    """A loopback port nobody listens on (and, with ``bus``, its cluster bus port too)."""
    rng = random.SystemRandom()
    for _ in range(500):
        port = rng.randrange(*PORT_RANGE)
        if port in _TAKEN or (bus and port + BUS_OFFSET in _TAKEN):
            continue
        if _bindable(port) and (not bus or _bindable(port + BUS_OFFSET)):
            _TAKEN.add(port)
            if bus:
                _TAKEN.add(port + BUS_OFFSET)
            return port
    raise RuntimeError("no free loopback port found")


# -- one process --------------------------------------------------------------------------------

_RUNNING: dict[int, Node] = {}


@dataclass(eq=False)
class Node:
    """One ``redis-server`` process (a cluster node, a master, a replica or a sentinel)."""

    port: int
    dir: Path
    args: list[str]
    role: str = "node"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"node {self.port} is not running")
        return self.proc.pid

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", *self.args],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _RUNNING[self.proc.pid] = self

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def call(self, *args: Any, timeout: float = 2.0) -> Any:
        """One command on this node (a fresh connection, closed afterwards)."""
        client = self.client(timeout)
        try:
            return client.execute_command(*args)
        finally:
            client.close()

    def ping(self) -> bool:
        try:
            return bool(self.call("PING", timeout=0.5))
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """``kill -9`` this process (by its PID) and reap it."""
        self._signal(signal.SIGKILL)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            self._forget()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
        self._forget()

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, sig)
        proc.wait(10)
        self._forget()

    def _forget(self) -> None:
        if self.proc is not None:
            _RUNNING.pop(self.proc.pid, None)

    def log_tail(self, lines: int = 20) -> str:
        for name in ("redis.log", "sentinel.log"):
            path = self.dir / name
            if path.exists():
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@atexit.register
def _stop_all() -> None:  # pragma: no cover - only when a run is interrupted
    for node in list(_RUNNING.values()):
        with contextlib.suppress(Exception):
            node.stop(grace=2.0)


def _wait(what: str, check: Callable[[], bool], timeout: float, nodes: list[Node]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.1)
    logs = "\n".join(f"--- {n.role} {n.port}\n{n.log_tail(8)}" for n in nodes)
    raise TimeoutError(f"{what}: not reached within {timeout:.0f} s\n{logs}")


def _info(node: Node, section: str) -> dict[str, Any]:
    """``INFO section`` as redis-py parses it (a replica line is a dict of its own)."""
    info = node.call("INFO", section)
    if not isinstance(info, dict):
        raise TypeError("INFO did not parse")
    return info


def _drop_prefix(node: Node, prefix: str) -> None:
    pattern = "".join("\\" + c if c in "\\*?[]{}" else c for c in prefix) + "*"
    client = node.client(timeout=10)
    try:
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    finally:
        client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _server_args(port: int, directory: Path, *extra: str) -> list[str]:
    return [
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(directory),
        "--logfile", str(directory / "redis.log"),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--repl-diskless-sync-delay", "0",
        *extra,
    ]  # fmt: skip


def _base_dir(base: Path | None, name: str) -> tuple[Path, bool]:
    if base is not None:
        path = Path(base) / name
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix=f"sw-{name}-")), True


# -- Redis Cluster ------------------------------------------------------------------------------


@dataclass
class Cluster:
    """A running Redis Cluster; ``nodes`` are in creation order (the first three start as
    masters, but failovers change that: ask :meth:`masters`)."""

    nodes: list[Node]
    node_timeout_ms: int
    n_masters: int = 3

    @property
    def seeds(self) -> list[tuple[str, int]]:
        return [(HOST, n.port) for n in self.nodes]

    @property
    def seed_list(self) -> str:
        """``host:port,host:port,...`` of every node."""
        return ",".join(n.address for n in self.nodes)

    def node(self, port: int) -> Node:
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def _topology(self) -> list[dict[str, Any]]:
        """``CLUSTER NODES`` as seen by a live node: one dict per node."""
        for n in self.nodes:
            if not n.alive():
                continue
            try:
                text = n.call("CLUSTER", "NODES")
            except (redis.RedisError, OSError):
                continue
            if isinstance(text, bytes):
                text = text.decode()
            if isinstance(text, dict):  # redis-py parses it into {address: info}
                return [
                    {"port": int(addr.split(":")[1].split("@")[0]), **info}
                    for addr, info in text.items()
                ]
            rows = []
            for line in str(text).splitlines():
                parts = line.split()
                addr = parts[1].split("@")[0]
                rows.append({"port": int(addr.rsplit(":", 1)[1]), "flags": parts[2]})
            return rows
        raise RuntimeError("no cluster node answers")

    def masters(self) -> list[Node]:
        """The nodes that are masters now (and not failed)."""
        out = []
        for row in self._topology():
            flags = str(row.get("flags", ""))
            if "master" in flags and "fail" not in flags:
                out.append(self.node(row["port"]))
        return sorted(out, key=lambda n: n.port)

    def replicas_of(self, master: Node) -> list[Node]:
        reps = _info(master, "replication")
        ports = [
            int(value["port"])
            for name, value in reps.items()
            if name.startswith("slave") and isinstance(value, dict)
        ]
        return [self.node(p) for p in ports]

    def master_of_slot(self, slot: int) -> Node:
        for n in self.nodes:
            if not n.alive():
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                for start, end, master, *_ in n.call("CLUSTER", "SLOTS"):
                    if int(start) <= slot <= int(end):
                        return self.node(int(master[1]))
        raise RuntimeError(f"no node serves slot {slot}")

    def healthy(self) -> bool:
        """Every live node sees all slots served, and every master has a replica in sync."""
        if not self._all_slots_ok():
            return False
        masters = self.masters()
        if len(masters) != self.n_masters:
            return False
        for m in masters:
            reps = self.replicas_of(m)
            if not reps:
                return False
            for r in reps:
                if _info(r, "replication").get("master_link_status") != "up":
                    return False
        return True

    def wait_healthy(self, timeout: float = 60.0) -> None:
        _wait("cluster healthy", self.healthy, timeout, self.nodes)

    def serving(self) -> bool:
        """Every slot is served by a live master (after a failover, before the old master is
        back as a replica)."""
        return self._all_slots_ok() and all(m.alive() for m in self.masters())

    def _all_slots_ok(self) -> bool:
        """Every live node reports ``cluster_state:ok`` with all 16384 slots served."""
        for n in self.nodes:
            if not n.alive():
                continue
            info = n.call("CLUSTER", "INFO")
            if not isinstance(info, dict):
                text = _text(info)
                info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if _text(info.get("cluster_state")) != "ok":
                return False
            if int(info.get("cluster_slots_ok", 0)) != CLUSTER_SLOTS:
                return False
        return True

    def kill(self, node: Node) -> None:
        """``kill -9`` one node by its PID."""
        node.kill()

    def restart(self, node: Node) -> None:
        """Start a stopped node again with its own ``nodes.conf``: it rejoins the cluster (a
        former master comes back as a replica of the node that replaced it)."""
        node.start()
        _wait(f"node {node.port} answers", node.ping, 30, [node])

    def dbsize(self, node: Node) -> int:
        return int(node.call("DBSIZE"))

    def flushall(self) -> None:
        for m in self.masters():
            m.call("FLUSHALL")

    def drop_prefix(self, prefix: str) -> None:
        """Delete every key starting with ``prefix`` on every master."""
        for m in self.masters():
            _drop_prefix(m, prefix)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@contextlib.contextmanager
def redis_cluster(
    base: Path | None = None,
    *,
    masters: int = 3,
    node_timeout_ms: int = 2000,
    start_timeout: float = 90.0,
) -> Iterator[Cluster]:
    """Start ``masters`` masters, each with a replica, on loopback (3 + 3 by default), wait
    until healthy, yield, stop by PID. ``redis-cli --cluster create`` builds 3 or more; fewer
    are assembled by hand (CLUSTER ADDSLOTSRANGE, MEET, REPLICATE)."""
    missing = missing_binaries()
    if missing:
        raise ServerMissing(f"not installed: {', '.join(missing)}")
    root, owned = _base_dir(base, "cluster")
    nodes: list[Node] = []
    for i in range(2 * masters):
        port = free_port(bus=True)
        directory = root / f"node{i}-{port}"
        args = _server_args(
            port,
            directory,
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-require-full-coverage", "no",
        )  # fmt: skip
        nodes.append(Node(port, directory, args, role="cluster"))
    cluster = Cluster(nodes, node_timeout_ms, masters)
    try:
        for n in nodes:
            n.start()
        _wait("cluster nodes answer", lambda: all(n.ping() for n in nodes), 30, nodes)
        if masters < 3:
            _assemble(cluster, masters)
            cluster.wait_healthy(start_timeout)
            yield cluster
            return
        subprocess.run(
            [
                "redis-cli", "--cluster", "create", *(n.address for n in nodes),
                "--cluster-replicas", "1", "--cluster-yes",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=start_timeout,
        )  # fmt: skip
        cluster.wait_healthy(start_timeout)
        yield cluster
    finally:
        cluster.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)


def _assemble(cluster: Cluster, masters: int) -> None:
    """A cluster of fewer than 3 masters (which ``redis-cli --cluster create`` refuses): the
    first ``masters`` nodes share the slots, each of the others replicates one of them."""
    heads, tails = cluster.nodes[:masters], cluster.nodes[masters:]
    step = CLUSTER_SLOTS // masters
    for i, node in enumerate(heads):
        last = CLUSTER_SLOTS - 1 if i == masters - 1 else (i + 1) * step - 1
        node.call("CLUSTER", "ADDSLOTSRANGE", i * step, last)
    for node in cluster.nodes[1:]:
        node.call("CLUSTER", "MEET", HOST, cluster.nodes[0].port)

    def all_known() -> bool:
        return all(
            len(_text(n.call("CLUSTER", "NODES")).splitlines()) == len(cluster.nodes)
            for n in cluster.nodes
        )

    _wait("cluster nodes meet", all_known, 30, cluster.nodes)
    for head, tail in zip(heads, tails, strict=True):
        tail.call("CLUSTER", "REPLICATE", _text(head.call("CLUSTER", "MYID")))


# -- Redis Sentinel -----------------------------------------------------------------------------


@dataclass
class SentinelSet:
    """A master, its replicas and the sentinels watching them under ``name``."""

    name: str
    servers: list[Node]  # the first started as master
    sentinels: list[Node]
    down_after_ms: int

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(HOST, s.port) for s in self.sentinels]

    @property
    def sentinel_list(self) -> str:
        """``host:port,host:port,...`` of every sentinel."""
        return ",".join(s.address for s in self.sentinels)

    def node(self, port: int) -> Node:
        for n in self.servers:
            if n.port == port:
                return n
        raise KeyError(port)

    def master(self) -> Node:
        """The master as the sentinels name it now (a majority of those answering)."""
        votes: dict[int, int] = {}
        for s in self.sentinels:
            if not s.alive():
                continue
            with contextlib.suppress(redis.RedisError, OSError):
                reply = s.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                if reply:
                    port = int(reply[1])
                    votes[port] = votes.get(port, 0) + 1
        if not votes:
            raise RuntimeError("no sentinel names a master")
        return self.node(max(votes, key=lambda p: votes[p]))

    def _sentinel_view(self, s: Node) -> dict[str, str]:
        reply = s.call("SENTINEL", "MASTER", self.name)
        items = list(reply.items()) if isinstance(reply, dict) else list(zip(*[iter(reply)] * 2))
        return {_text(k): _text(v) for k, v in items}

    def healthy(self) -> bool:
        """Every sentinel names the same live master, sees the other sentinels and every live
        replica, and every live replica is in sync with that master."""
        master = self.master()
        if not master.alive() or _info(master, "replication").get("role") != "master":
            return False
        live_replicas = [n for n in self.servers if n.alive() and n is not master]
        for s in self.sentinels:
            view = self._sentinel_view(s)
            if int(view.get("port", 0)) != master.port or "down" in view.get("flags", ""):
                return False
            if int(view.get("num-other-sentinels", 0)) != len(self.sentinels) - 1:
                return False
            if int(view.get("num-slaves", 0)) < len(live_replicas):
                return False
        for r in live_replicas:
            info = _info(r, "replication")
            if info.get("role") != "slave" or int(info.get("master_port", 0)) != master.port:
                return False
            if info.get("master_link_status") != "up":
                return False
        return True

    def drop_prefix(self, prefix: str) -> None:
        """Delete every key starting with ``prefix`` on the master."""
        _drop_prefix(self.master(), prefix)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        _wait("sentinel set-up healthy", self.healthy, timeout, self.servers + self.sentinels)

    def kill(self, node: Node) -> None:
        """``kill -9`` one server by its PID."""
        node.kill()

    def restart(self, node: Node) -> None:
        """Start a stopped server again; the sentinels turn a former master into a replica."""
        node.start()
        _wait(f"server {node.port} answers", node.ping, 30, [node])

    def stop(self) -> None:
        for n in self.sentinels + self.servers:
            n.stop()


def _sentinel_conf(port: int, directory: Path, name: str, master: int, down_ms: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "sentinel.conf"
    path.write_text(
        "\n".join(
            [
                f"port {port}",
                f"bind {HOST}",
                f"dir {directory}",
                f"logfile {directory / 'sentinel.log'}",
                "daemonize no",
                f"sentinel monitor {name} {HOST} {master} 2",
                f"sentinel down-after-milliseconds {name} {down_ms}",
                f"sentinel failover-timeout {name} {max(4 * down_ms, 5000)}",
                f"sentinel parallel-syncs {name} 1",
                "",
            ]
        )
    )
    return path


@contextlib.contextmanager
def redis_sentinel(
    base: Path | None = None,
    *,
    name: str = "swmaster",
    replicas: int = 2,
    down_after_ms: int = 2000,
    start_timeout: float = 90.0,
) -> Iterator[SentinelSet]:
    """Start a master, ``replicas`` replicas and 3 sentinels (quorum 2) on loopback, wait until
    healthy, yield, stop by PID."""
    missing = missing_binaries()
    if missing:
        raise ServerMissing(f"not installed: {', '.join(missing)}")
    root, owned = _base_dir(base, "sentinel")
    master_port = free_port()
    servers = [Node(master_port, root / f"master-{master_port}", [], role="server")]
    servers[0].args = _server_args(master_port, servers[0].dir)
    for _ in range(replicas):
        port = free_port()
        directory = root / f"replica-{port}"
        args = _server_args(port, directory, "--replicaof", HOST, str(master_port))
        servers.append(Node(port, directory, args, role="server"))
    sentinels = []
    for _ in range(3):
        port = free_port()
        directory = root / f"sentinel-{port}"
        conf = _sentinel_conf(port, directory, name, master_port, down_after_ms)
        sentinels.append(Node(port, directory, [str(conf), "--sentinel"], role="sentinel"))
    group = SentinelSet(name, servers, sentinels, down_after_ms)
    try:
        for n in servers:
            n.start()
        _wait("servers answer", lambda: all(n.ping() for n in servers), 30, servers)
        for s in sentinels:
            s.start()
        group.wait_healthy(start_timeout)
        yield group
    finally:
        group.stop()
        if owned:
            shutil.rmtree(root, ignore_errors=True)
