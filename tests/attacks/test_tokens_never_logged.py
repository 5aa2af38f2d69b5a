"""Tokens never reach the logs: the JSON log sink's whole output for a scenario that issues,
rotates, replays, refuses and logs out is searched for every raw cookie value, every CSRF token
handed out and every session's CSRF secret. Only short references (a prefix of the keyed hash)
may appear."""

from __future__ import annotations

import json
import logging

import pytest

from sessionwarden import tokens
from sessionwarden.clock import ManualClock
from sessionwarden.monitor import JsonLogSink
from sessionwarden.policy import CsrfPolicy, MonitorPolicy, Policy
from sessionwarden.records import SessionRecord

from ..conftest import SECRET
from .conftest import RigFactory, capture_logger
from .test_id_never_exposed import run_everything

pytestmark = pytest.mark.anyio


async def test_no_cookie_or_csrf_token_in_json_logs(make_rig: RigFactory) -> None:
    logger, buf = capture_logger("sessionwarden.test.attacks.logs")
    clock = ManualClock()
    policy = Policy(
        secret_keys=(SECRET,),
        allowed_hosts=("*",),
        rotate_every=60,
        rotation_grace=5,
        csrf=CsrfPolicy(max_body_bytes=4096),
        monitor=MonitorPolicy(unknown_id_limit_per_minute=3),
    )
    rig = make_rig(policy=policy, clock=clock, sink=JsonLogSink(logger, level=logging.INFO))
    b = rig.browser()
    thief = rig.browser(peer="203.0.113.66")

    secrets: set[str] = set()
    store = rig.app.store

    async def remember_secret() -> None:
        if b.cookie:
            rec = await store.get(rig.app.engine.keyring.hash_id(b.cookie))
            if isinstance(rec, SessionRecord) and rec.csrf_secret:
                secrets.add(rec.csrf_secret)

    await b.token()
    await remember_secret()
    guessed = await run_everything(b, thief, clock)
    # a second, signed-in session whose secret we can read before it is gone
    c = rig.browser(peer="198.51.100.9")
    await c.login("carol")
    rec = await store.get(rig.app.engine.keyring.hash_id(c.cookie or ""))
    assert isinstance(rec, SessionRecord)
    secrets.add(rec.csrf_secret)
    await c.post("/transfer", data={"to": "x", "amount": "1", "csrf_token": await c.token()})
    await c.post("/transfer", data={"to": "x", "amount": "1", "csrf_token": b.tokens[-1]})  # 403

    output = buf.getvalue()
    lines = output.splitlines()
    assert len(lines) >= 15, "the scenario should have logged plenty of events"
    kinds = {json.loads(line)["event"] for line in lines}
    assert {"session.logged_in", "session.rotated", "csrf.refused", "client.throttled"} <= kinds
    cookies = set(b.issued) | set(thief.issued) | set(c.issued)
    all_tokens = set(b.tokens) | set(thief.tokens) | set(c.tokens)
    assert cookies and all_tokens and secrets
    for secret in cookies | all_tokens | secrets | set(guessed):
        assert secret not in output
        assert secret[:20] not in output
    # refs are short prefixes of keyed hashes, never anything a client sent
    for line in lines:
        doc = json.loads(line)
        assert len(doc["ref"]) in (0, tokens.REF_LENGTH)
