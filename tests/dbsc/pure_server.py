"""A minimal server made only of the pure DBSC decisions, for the browser client to talk to.

It stands where the adapters will stand: it keeps each app session's flags as JSON text (as a
store would), offers registration after login, routes the two endpoints, and on every other
request checks the bound cookie and applies the policy. No sessionwarden adapter is involved.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from sessionwarden import dbsc
from sessionwarden.clock import ManualClock
from sessionwarden.cookies import cookie_values
from sessionwarden.tokens import Keyring

from .client import Response

ORIGIN = "https://app.test"
SESSION_COOKIE = "__Host-id"


@dataclass
class PureServer:
    policy: dbsc.DbscPolicy = field(default_factory=lambda: dbsc.DbscPolicy(enabled=True))
    clock: ManualClock = field(default_factory=ManualClock)
    keyring: Keyring = field(default_factory=lambda: Keyring([b"k" * 32]))
    #: app session cookie -> the record's flags, serialised as a store keeps them
    records: dict[str, str] = field(default_factory=dict)
    notes: list[dbsc.DbscNote] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    origin: str = ORIGIN

    def state(self, sid: str) -> dbsc.DbscState | None:
        text = self.records.get(sid)
        return None if text is None else dbsc.state_of(json.loads(text))

    def put(self, sid: str, state: dbsc.DbscState | None) -> None:
        flags = json.loads(self.records.get(sid, "{}"))
        self.records[sid] = json.dumps(dbsc.flags_with(flags, state))

    def _result(self, sid: str | None, result: dbsc.DbscResult) -> Response:
        self.notes.extend(result.notes)
        if sid is not None and sid in self.records and result.changed:
            self.put(sid, result.state)
        return Response(result.status, list(result.headers), result.body_bytes())

    def send(self, method: str, path: str, headers: dict[str, str]) -> Response:
        cookie = headers.get("cookie", "")
        found = cookie_values(cookie, SESSION_COOKIE)
        sid = found[0] if len(found) == 1 and found[0] in self.records else None
        request = dbsc.DbscRequest.from_headers(headers.get)
        now, hv = self.clock.now(), self.keyring.hash_value
        if path == "/login":
            sid = secrets.token_urlsafe(32)
            self.records[sid] = "{}"
            offer = dbsc.registration_offer(self.policy, None, now, hv)
            self.put(sid, offer.state)
            set_cookie = f"{SESSION_COOKIE}={sid}; Path=/; Secure; HttpOnly; SameSite=Lax"
            return Response(200, [("Set-Cookie", set_cookie), offer.header], b"welcome")
        if method == "POST" and path == self.policy.register_path:
            state = None if sid is None else self.state(sid)
            result = dbsc.registration(self.policy, state, request, now, hv, self.origin)
            return self._result(sid, result)
        if method == "POST" and path == self.policy.refresh_path:
            state = None if sid is None else self.state(sid)
            result = dbsc.refresh(self.policy, state, request, now, hv, self.origin)
            return self._result(sid, result)
        return self._page(sid, path, cookie, headers)

    def _page(self, sid: str | None, path: str, cookie: str, headers: dict[str, str]) -> Response:
        state = None if sid is None else self.state(sid)
        self.notes.extend(dbsc.skipped_notes(headers.get("secure-session-skipped"), state))
        if sid is not None and dbsc.in_scope(self.policy, path):
            values = cookie_values(cookie, self.policy.cookie_name)
            value = values[0] if len(values) == 1 else (None if not values else "")
            check = dbsc.check_bound_cookie(state, value, self.clock.now(), self.keyring.hash_value)
            verdict = dbsc.enforce(self.policy, check)
            if verdict.note is not None:
                self.notes.append(verdict.note)
            if verdict.action == "revoke":
                self.records.pop(sid)
                self.revoked.append(sid)
                sid = None
            elif verdict.action == "anonymous":
                sid = None
        who = "anonymous" if sid is None else "alice"
        return Response(200, [("Content-Type", "text/plain")], who.encode())

    def kinds(self) -> list[str]:
        return [f"{n.kind.value}:{n.reason}" for n in self.notes]
