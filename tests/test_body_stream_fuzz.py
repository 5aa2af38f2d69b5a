"""Request bodies fuzzed as streams through both adapters: what the application receives.

A hypothesis state machine signs in once, then sends POSTs through the ASGI middleware and the
WSGI middleware (one store): form, JSON and multipart bodies, the CSRF token in the header, in
the body (anywhere, so chunk boundaries split it), wrong or missing, cut into arbitrary chunks.
With faults on, the client also disconnects part-way (ASGI), sends fewer bytes than its
``Content-Length`` or more (WSGI), or declares a length that differs from what the stream
carries. The property: **the application either receives exactly the full body that was sent
or is not called with a complete-looking body at all** (it may see the disconnect itself, as a
pass-through stream shows it); and with no fault and a valid token it is called and gets the
body byte for byte.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from sessionwarden.asgi import SessionWardenMiddleware, get_session
from sessionwarden.clock import ManualClock
from sessionwarden.policy import Policy
from sessionwarden.stores import InlineAsyncStore, MemoryStore
from sessionwarden.wsgi import SessionWardenWSGI

from .conftest import SECRET

COOKIE = "__Host-id"
HOST = "localhost"
FIELD = "csrf_token"

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6).filter(
    lambda n: n != FIELD
)
values = st.text(max_size=40)


@dataclass
class Spec:
    kind: str  # form, json, multipart
    token: str  # header, body, none, wrong
    fields: list[tuple[str, str]]
    token_at: int
    splits: list[int]


specs = st.builds(
    Spec,
    kind=st.sampled_from(("form", "json", "multipart")),
    token=st.sampled_from(("header", "body", "body", "none", "wrong")),
    fields=st.lists(st.tuples(names, values), max_size=4),
    token_at=st.integers(0, 4),
    splits=st.lists(st.integers(0, 4096), max_size=8),
)


def _encode(spec: Spec, token: str) -> tuple[bytes, str, dict[str, str]]:
    """The body, its content type and the extra headers of one request."""
    fields = list(spec.fields)
    headers: dict[str, str] = {}
    presented = token if spec.token != "wrong" else token[::-1]
    if spec.token in ("header",):
        headers["x-csrf-token"] = presented
    elif spec.token in ("body", "wrong"):
        fields.insert(min(spec.token_at, len(fields)), (FIELD, presented))
    if spec.kind == "form":
        body = "&".join(f"{quote(k)}={quote(v)}" for k, v in fields).encode()
        return body, "application/x-www-form-urlencoded", headers
    if spec.kind == "json":
        return json.dumps(dict(fields)).encode(), "application/json", headers
    boundary = "fuzzboundary7MA4YWxkTrZu0gW"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}", headers


def _pieces(body: bytes, splits: list[int]) -> list[bytes]:
    cuts = sorted({s % (len(body) + 1) for s in splits} | {0, len(body)})
    return [body[a:b] for a, b in itertools.pairwise(cuts)] or [b""]


def _may_pass(spec: Spec) -> bool:
    """A valid token where the guard reads it: the request must reach the app."""
    return spec.token == "header" or (spec.token == "body" and spec.kind != "json")


class BodyStreams(RuleBasedStateMachine):
    faults: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(1_700_000_000.0)
        store = MemoryStore()
        policy = Policy(secret_keys=(SECRET,))
        self.received: list[tuple[str, bytes]] = []
        self.asgi = SessionWardenMiddleware(
            self._asgi_app, policy=policy, store=InlineAsyncStore(store), clock=self.clock
        )
        self.wsgi = SessionWardenWSGI(self._wsgi_app, policy=policy, store=store, clock=self.clock)
        self.runner = asyncio.Runner()
        login = self._asgi(b"GET", "/login", [], [b""], None)
        self.cookie = login[1]
        assert self.cookie
        self.token = self._asgi(b"GET", "/token", [], [b""], None)[2].decode()

    def teardown(self) -> None:
        self.runner.close()

    # -- the applications -------------------------------------------------------------------
    async def _asgi_app(self, scope: Any, receive: Any, send: Any) -> None:
        out = b""
        if scope["path"] == "/login":
            get_session(scope).login("alice")
        elif scope["path"] == "/token":
            out = scope["state"]["csrf_token"]().encode()
        else:
            data = b""
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.received.append(("disconnect", data))
                    break
                data += message.get("body", b"")
                if not message.get("more_body", False):
                    self.received.append(("complete", data))
                    break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": out})

    def _wsgi_app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        declared = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        if declared:
            data = stream.read(int(declared))
            self.received.append(("complete" if len(data) == int(declared) else "short", data))
        else:
            self.received.append(("complete", stream.read()))
        start_response("200 OK", [])
        return [b""]

    # -- clients --------------------------------------------------------------------------
    def _asgi(
        self,
        method: bytes,
        path: str,
        headers: list[tuple[bytes, bytes]],
        pieces: list[bytes],
        disconnect_after: int | None,
    ) -> tuple[int, str | None, bytes]:
        handed = 0

        async def receive() -> dict[str, Any]:
            nonlocal handed
            if disconnect_after is not None and handed >= disconnect_after:
                return {"type": "http.disconnect"}
            if handed >= len(pieces):
                return {"type": "http.disconnect"}
            handed += 1
            return {
                "type": "http.request",
                "body": pieces[handed - 1],
                "more_body": handed < len(pieces),
            }

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        all_headers = [(b"host", HOST.encode()), (b"sec-fetch-site", b"same-origin"), *headers]
        if getattr(self, "cookie", None):
            all_headers.append((b"cookie", f"{COOKIE}={self.cookie}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method.decode(),
            "scheme": "https",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": all_headers,
            "client": ("127.0.0.1", 50000),
            "server": (HOST, 443),
        }
        self.runner.run(self.asgi(scope, receive, send))
        start = next(m for m in sent if m["type"] == "http.response.start")
        cookie = None
        for name, value in start.get("headers") or []:
            if name == b"set-cookie" and value.startswith(f"{COOKIE}=".encode()):
                cookie = value.split(b";", 1)[0].split(b"=", 1)[1].decode()
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return int(start["status"]), cookie, body

    # -- rules ------------------------------------------------------------------------------
    @rule(
        spec=specs,
        cut=st.one_of(st.none(), st.integers(0, 8)),
        length_delta=st.sampled_from((0, 0, -3, 3, None)),
    )
    def asgi_post(self, spec: Spec, cut: int | None, length_delta: int | None) -> None:
        body, ctype, extra = _encode(spec, self.token)
        pieces = _pieces(body, spec.splits)
        if not self.faults:
            cut, length_delta = None, 0
        headers = [(b"content-type", ctype.encode())]
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        if length_delta is not None:
            headers.append((b"content-length", str(max(0, len(body) + length_delta)).encode()))
        self.received.clear()
        status, _, _ = self._asgi(b"POST", "/echo", headers, pieces, cut)
        whole = cut is None or cut >= len(pieces)
        for how, data in self.received:
            if how == "complete":
                assert whole and data == body, (
                    f"ASGI app got {len(data)} bytes as a complete body; {len(body)} were sent"
                    f" in {len(pieces)} chunks, cut after {cut}"
                )
        if whole and length_delta == 0 and _may_pass(spec):
            assert status == 200 and self.received == [("complete", body)], status

    @rule(
        spec=specs,
        sent_less=st.sampled_from((0, 0, 1, 7, 10_000)),
        extra=st.sampled_from((b"", b"", b"NEXT-REQUEST")),
        no_length=st.booleans(),
    )
    def wsgi_post(self, spec: Spec, sent_less: int, extra: bytes, no_length: bool) -> None:
        body, ctype, headers = _encode(spec, self.token)
        if not self.faults:
            sent_less, extra, no_length = 0, b"", False
        on_wire = body[: max(0, len(body) - sent_less)] + (extra if sent_less == 0 else b"")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/echo",
            "QUERY_STRING": "",
            "SERVER_NAME": HOST,
            "SERVER_PORT": "443",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": HOST,
            "HTTP_SEC_FETCH_SITE": "same-origin",
            "HTTP_COOKIE": f"{COOKIE}={self.cookie}",
            "CONTENT_TYPE": ctype,
            "wsgi.url_scheme": "https",
            "wsgi.input": io.BytesIO(on_wire if not no_length else body),
            "wsgi.errors": io.StringIO(),
            "wsgi.version": (1, 0),
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        if no_length:
            environ["wsgi.input_terminated"] = True
        else:
            environ["CONTENT_LENGTH"] = str(len(body))
        for k, v in headers.items():
            environ["HTTP_" + k.upper().replace("-", "_")] = v
        statuses: list[str] = []
        self.received.clear()
        out = self.wsgi(environ, lambda status, hdrs, exc=None: statuses.append(status))
        b"".join(out)
        whole = no_length or sent_less == 0 or len(body) == 0
        for how, data in self.received:
            if how == "complete":
                assert whole and data == body, (
                    f"WSGI app got {len(data)} bytes as a complete body; {len(body)} declared,"
                    f" {len(on_wire)} on the wire"
                )
        if whole and _may_pass(spec):
            assert statuses[0].startswith("200") and self.received == [("complete", body)]


class CutBodyStreams(BodyStreams):
    faults = True


NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target)
SETTINGS = settings(
    max_examples=int(os.environ.get("SESSIONWARDEN_FUZZ_EXAMPLES", 30)),
    stateful_step_count=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


CUT_SETTINGS = settings(
    SETTINGS,
    phases=tuple(Phase) if os.environ.get("SESSIONWARDEN_FUZZ_SHRINK") else NO_SHRINK,
)


def test_whole_bodies_reach_the_app_byte_for_byte() -> None:
    run_state_machine_as_test(BodyStreams, settings=SETTINGS)


def test_cut_bodies_never_reach_the_app_as_complete() -> None:
    # Issue 13, hole 2: found at once on the code before its fix. No shrinking here (a failing
    # run would spend minutes on it): SESSIONWARDEN_FUZZ_SHRINK=1 gives the smallest example.
    run_state_machine_as_test(CutBodyStreams, settings=CUT_SETTINGS)

