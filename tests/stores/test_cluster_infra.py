"""The Redis Cluster and Sentinel set-ups the tests start are real and healthy.

These check the fixtures themselves (what the store tests build on) with redis-py's own cluster
and sentinel clients: topology, slot coverage, sharding, one-slot scripts, master discovery.
"""

from __future__ import annotations

import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.sentinel import Sentinel

from tests.cluster_support import CLUSTER_SLOTS, Cluster, SentinelSet

pytestmark = pytest.mark.cluster


def _client(cluster: Cluster) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in cluster.seeds],
        socket_timeout=5,
        socket_connect_timeout=5,
    )


def test_cluster_has_three_masters_each_with_a_replica_in_sync(redis_cluster: Cluster) -> None:
    masters = redis_cluster.masters()
    assert len(masters) == 3
    replicas = [r for m in masters for r in redis_cluster.replicas_of(m)]
    assert len(replicas) == 3
    assert not set(masters) & set(replicas)
    assert all(n.alive() for n in redis_cluster.nodes)
    # every slot has exactly one master, and every node agrees the cluster is up
    served = set()
    for slot in (0, 5460, 5461, 10922, 10923, CLUSTER_SLOTS - 1):
        served.add(redis_cluster.master_of_slot(slot).port)
    assert served == {m.port for m in masters}
    assert redis_cluster.healthy()


def test_keys_spread_over_every_master(redis_cluster: Cluster) -> None:
    client = _client(redis_cluster)
    try:
        prefix = "swinfra:spread:"
        for i in range(600):
            client.set(f"{prefix}{i}", i, ex=60)
        per_master = {
            m.port: sum(
                1
                for i in range(600)
                if redis_cluster.master_of_slot(key_slot(f"{prefix}{i}".encode())) is m
            )
            for m in redis_cluster.masters()
        }
        assert all(count > 120 for count in per_master.values()), per_master
        assert client.get(f"{prefix}599") == b"599"
        # a key lives on the master that serves its slot; the others redirect (MOVED)
        owner = redis_cluster.master_of_slot(key_slot(f"{prefix}0".encode()))
        assert owner.call("EXISTS", f"{prefix}0") == 1
        for other in (m for m in redis_cluster.masters() if m is not owner):
            with pytest.raises(redis.exceptions.MovedError):
                other.call("EXISTS", f"{prefix}0")
    finally:
        client.close()


def test_a_script_runs_on_keys_sharing_a_hash_tag_and_refuses_others(
    redis_cluster: Cluster,
) -> None:
    client = _client(redis_cluster)
    try:
        script = client.register_script(
            "redis.call('SET', KEYS[2], redis.call('GET', KEYS[1])) return 1"
        )
        client.set("swinfra:{lineage}:a", "v", ex=60)
        assert script(keys=["swinfra:{lineage}:a", "swinfra:{lineage}:b"]) == 1
        assert client.get("swinfra:{lineage}:b") == b"v"
        with pytest.raises(RedisClusterException, match="same key slot"):
            script(keys=["swinfra:x:a", "swinfra:y:b"])
    finally:
        client.close()


def test_sentinel_names_the_master_and_its_replicas(redis_sentinel: SentinelSet) -> None:
    sentinel = Sentinel(redis_sentinel.sentinel_addresses, socket_timeout=5)
    host, port = sentinel.discover_master(redis_sentinel.name)
    assert (host, port) == ("127.0.0.1", redis_sentinel.master().port)
    replicas = {p for _, p in sentinel.discover_slaves(redis_sentinel.name)}
    assert replicas == {n.port for n in redis_sentinel.servers if n.port != port}
    master = sentinel.master_for(redis_sentinel.name)
    try:
        master.set("swinfra:sentinel", "here", ex=60)
        assert redis.Redis(port=port).get("swinfra:sentinel") == b"here"
    finally:
        master.close()
