"""Soak test: the demo on two worker processes sharing one store, driven by simulated users.

    python bench/soak.py --store redis --seconds 60
    python bench/soak.py --store sqlite --seconds 60
    python bench/soak.py --store both --seconds 10          # what .ci/run does

Two demo processes (``python -m sessionwarden.demo``) listen on two free loopback ports and share
the store (a private Redis key prefix on 127.0.0.1:6379, or one SQLite file) and the secret key;
every request of a simulated user goes to the next port in turn (round robin), so consecutive
requests of one session are served by different processes. The demo rotates IDs every 5 seconds
(``--rotate-every 5``), so every session rotates many times during a run.

Each simulated user (asyncio + httpx, cookies kept by hand) signs in through the form with the
CSRF token, browses, makes transfers through the form and through the JSON API, waits (long enough
to cross rotations), checks its history on /account and signs out, again and again. Like a
browser with a second tab open, each page is requested together with a keep-alive call (/api/me)
and its assets are fetched in parallel once it arrives (``--sequential`` turns that off); Set-Cookie
headers are applied in the order responses arrive.

Printed at the end, and the exit status is non-zero unless all three are zero:

* ``5xx``: server errors;
* ``sessions lost``: a signed-in user unexpectedly anonymous (redirected to /login, 401);
* ``writes lost``: a transfer acknowledged but missing from the history on /account.

The run is bounded (``--seconds``, and a hard cap on requests per user), targets loopback only,
and always stops every process it started (by process id) and deletes its keys and files.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import _path  # type: ignore[import-not-found]

    _path.fix()

import argparse
import asyncio
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("SESSIONWARDEN_TEST_REDIS", "redis://127.0.0.1:6379/0")
COOKIE = "__Host-id"
PASSWORD = "soak-password-1"  # a throwaway demo account
ROTATE_EVERY = 5.0
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
MAX_REQUESTS_PER_USER = 20_000
TOKEN_RE = re.compile(r'name="csrf_token" value="([A-Za-z0-9_-]+)"')
ASSETS = ("/static/demo.css", "/static/sessionwarden.js")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stats:
    requests: int = 0
    status: Counter[int] = field(default_factory=Counter)
    errors_5xx: int = 0
    sessions_lost: int = 0
    writes_lost: int = 0
    transport_errors: int = 0
    logins: int = 0
    transfers: int = 0
    rotations_seen: int = 0
    cleared_while_signed_in: int = 0
    details: list[str] = field(default_factory=list)

    def note(self, what: str) -> None:
        if len(self.details) < 20:
            self.details.append(what)


class RoundRobin:
    """Hands out the demo processes' base URLs in turn."""

    def __init__(self, bases: list[str]) -> None:
        self.bases = bases
        self.i = 0

    def next(self) -> str:
        self.i += 1
        return self.bases[self.i % len(self.bases)]


class User:
    """One simulated person with a browser-like cookie jar of one cookie."""

    def __init__(
        self, name: str, client: httpx.AsyncClient, rr: RoundRobin, stats: Stats, parallel: bool
    ) -> None:
        self.name = name
        self.client = client
        self.rr = rr
        self.stats = stats
        self.parallel = parallel
        self.cookie: str | None = None
        self.signed_in = False
        self.acknowledged: list[str] = []
        self.requests = 0
        self.rng = random.Random(name)

    def _apply(self, r: httpx.Response) -> None:
        for header in r.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            if name != COOKIE:
                continue
            value = rest.split(";", 1)[0]
            if not value and self.signed_in and r.request.url.path != "/logout":
                # the server told a signed-in browser to drop its cookie without a logout
                self.stats.cleared_while_signed_in += 1
            if value and value != self.cookie and self.cookie is not None:
                self.stats.rotations_seen += 1
            self.cookie = value or None

    async def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        self.requests += 1
        if self.requests > MAX_REQUESTS_PER_USER:
            raise asyncio.CancelledError
        base = self.rr.next()
        headers = dict(kw.pop("headers", {}) or {})
        headers["user-agent"] = UA
        if method != "GET":
            headers.setdefault("sec-fetch-site", "same-origin")
        if self.cookie:
            headers["cookie"] = f"{COOKIE}={self.cookie}"
        try:
            r = await self.client.request(method, base + path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.stats.transport_errors += 1
            self.stats.note(f"{self.name} {method} {path}: {type(exc).__name__}")
            raise
        self.stats.requests += 1
        self.stats.status[r.status_code] += 1
        if r.status_code >= 500:
            self.stats.errors_5xx += 1
            self.stats.note(f"{self.name} {method} {path}: {r.status_code}")
        self._apply(r)
        return r

    async def page(self, path: str) -> httpx.Response:
        """A page. Browser-like mode: another tab's keep-alive call (/api/me) runs at the same
        time, and the page's assets are fetched in parallel once it arrives."""
        if not self.parallel:
            return await self.request("GET", path)
        page, me = await asyncio.gather(
            self.request("GET", path),
            self.request("GET", "/api/me", headers={"accept": "application/json"}),
            return_exceptions=True,
        )
        if isinstance(page, BaseException):
            raise page
        await asyncio.gather(*(self.request("GET", a) for a in ASSETS), return_exceptions=True)
        if self.signed_in and isinstance(me, httpx.Response) and me.status_code == 401:
            self.lost(f"/api/me 401 next to {path}")
        return page

    def lost(self, why: str) -> None:
        self.stats.sessions_lost += 1
        self.stats.note(f"{self.name}: session lost ({why})")
        self.signed_in = False

    async def login(self) -> None:
        r = await self.page("/login")
        token = TOKEN_RE.search(r.text)
        if r.status_code != 200 or token is None:
            self.stats.note(f"{self.name}: login page {r.status_code}")
            return
        r = await self.request(
            "POST",
            "/login",
            data={"username": self.name, "password": PASSWORD, "csrf_token": token.group(1)},
        )
        if r.status_code == 303 and r.headers.get("location") == "/account":
            self.signed_in = True
            self.acknowledged = []
            self.stats.logins += 1
        else:
            self.stats.note(f"{self.name}: login answered {r.status_code}")

    async def account(self) -> str | None:
        r = await self.page("/account")
        if r.status_code == 303:
            self.lost("/account redirected to /login")
            return None
        token = TOKEN_RE.search(r.text)
        return token.group(1) if r.status_code == 200 and token else None

    async def transfer_form(self, token: str, n: int) -> None:
        to = f"{self.name}-f{n}"
        r = await self.request(
            "POST", "/transfer", data={"to": to, "amount": "1.00", "csrf_token": token}
        )
        if r.status_code == 303 and r.headers.get("location") == "/transfer/sent":
            # post/redirect/get: the confirmation is the page the redirect leads to
            r = await self.request("GET", "/transfer/sent")
        if r.status_code == 200 and "transfer-confirmation" in r.text:
            self.acknowledged.append(to)
            self.stats.transfers += 1
        elif r.status_code == 303:
            self.lost(f"/transfer redirected to {r.headers.get('location')}")
        else:
            self.stats.note(f"{self.name}: transfer answered {r.status_code}")

    async def transfer_api(self, n: int) -> None:
        r = await self.request("GET", "/api/csrf", headers={"accept": "application/json"})
        if r.status_code != 200:
            return
        to = f"{self.name}-a{n}"
        r = await self.request(
            "POST",
            "/api/transfer",
            json={"to": to, "amount": "2.00"},
            headers={"x-csrf-token": r.json()["csrf_token"], "accept": "application/json"},
        )
        if r.status_code == 200 and r.json().get("ok"):
            self.acknowledged.append(to)
            self.stats.transfers += 1
        elif r.status_code == 401:
            self.lost("POST /api/transfer 401")
        else:
            self.stats.note(f"{self.name}: api transfer answered {r.status_code}")

    async def check_history(self) -> str | None:
        r = await self.request("GET", "/account")
        if r.status_code != 200:
            if r.status_code == 303:
                self.lost("/account redirected to /login at the history check")
            return None
        for to in self.acknowledged[-20:]:  # the demo keeps the last 20 transfers
            if f"<td>{to}</td>" not in r.text:
                self.stats.writes_lost += 1
                self.stats.note(f"{self.name}: transfer to {to} acknowledged but missing")
        token = TOKEN_RE.search(r.text)
        return token.group(1) if token else None

    async def logout(self, token: str) -> None:
        r = await self.request("POST", "/logout", data={"csrf_token": token})
        if r.status_code == 303:
            self.signed_in = False
            self.cookie = None if self.cookie is None else self.cookie

    async def live(self, until: float) -> None:
        n = 0
        while time.monotonic() < until:
            await self.login()
            if not self.signed_in:
                await asyncio.sleep(0.5)
                continue
            for _ in range(self.rng.randint(3, 8)):  # at most 16 transfers: under the demo's 20
                if time.monotonic() >= until or not self.signed_in:
                    break
                token = await self.account()
                if token is None or not self.signed_in:
                    break
                n += 1
                await self.transfer_form(token, n)
                if self.rng.random() < 0.5 and self.signed_in:
                    n += 1
                    await self.transfer_api(n)
                # think time: long enough that rotations (every 5 s) happen between requests
                await asyncio.sleep(self.rng.uniform(0.2, 2.5))
            if self.signed_in:
                token = await self.check_history()
                if token is not None and self.signed_in:
                    await self.logout(token)


async def drive(bases: list[str], users: list[str], seconds: float, parallel: bool) -> Stats:
    stats = Stats()
    rr = RoundRobin(bases)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(10.0), limits=limits, follow_redirects=False, trust_env=False
    ) as client:
        until = time.monotonic() + seconds
        people = [User(name, client, rr, stats, parallel) for name in users]

        async def one(u: User) -> None:
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await asyncio.sleep(u.rng.uniform(0, 1.0))  # staggered arrivals
                await u.live(until)

        await asyncio.wait_for(asyncio.gather(*(one(u) for u in people)), timeout=seconds + 60)
    return stats


def start_demo(
    port: int, store: str, key_file: Path, users: list[str], log: Path
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "sessionwarden.demo",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        store,
        "--secret-file",
        str(key_file),
        "--rotate-every",
        str(ROTATE_EVERY),
    ]
    for name in users:
        cmd += ["--user", f"{name}:{PASSWORD}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"demo on {base} exited with {proc.returncode}")
        try:
            if httpx.get(base + "/api/csrf", timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"demo on {base} did not start within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one demo process we started (its own process group, by id): TERM, then KILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drop_redis_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=prefix + "*", count=20_000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def run_one(
    kind: str, seconds: float, n_users: int, parallel: bool, keep_logs: Path | None = None
) -> tuple[bool, str]:
    workdir = Path(tempfile.mkdtemp(prefix="sw-soak-"))
    procs: list[subprocess.Popen[bytes]] = []
    prefix = f"swsoak:{uuid.uuid4().hex[:12]}:"
    if kind == "redis":
        host = httpx.URL(REDIS_URL.replace("redis://", "http://")).host
        if host not in _LOOPBACK:
            raise SystemExit(f"refusing a non-loopback Redis: {host}")
        store = f"{REDIS_URL}?prefix={prefix}"
    else:
        store = f"sqlite:///{workdir / 'sessions.db'}"
    key_file = workdir / "secret.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    users = [f"user{i:03d}" for i in range(n_users)]
    started = time.monotonic()
    try:
        ports = [free_port(), free_port()]
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for i, port in enumerate(ports):
            procs.append(start_demo(port, store, key_file, users, workdir / f"demo{i}.log"))
        for base, proc in zip(bases, procs, strict=True):
            wait_ready(base, proc)
        stats = asyncio.run(drive(bases, users, seconds, parallel))
        alive = all(p.poll() is None for p in procs)
    finally:
        for proc in procs:
            stop(proc)
        tracebacks = 0
        for log in workdir.glob("demo*.log"):
            tracebacks += log.read_text(errors="replace").count("Traceback")
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                shutil.copy(log, keep_logs / f"{kind}-{log.name}")
        if kind == "redis":
            with contextlib.suppress(Exception):
                drop_redis_prefix(prefix)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    ok = (
        stats.errors_5xx == 0
        and stats.sessions_lost == 0
        and stats.writes_lost == 0
        and stats.transport_errors == 0
        and tracebacks == 0
        and alive
    )
    mode = "browser-like (page + /api/me of another tab in parallel, then assets)"
    if not parallel:
        mode = "sequential"
    lines = [
        f"== soak: demo x2 workers (round robin) on {kind}, {n_users} users, {seconds:.0f}s",
        f"mode:              {mode}",
        f"requests served:   {stats.requests}  ({stats.requests / max(seconds, 1):.0f}/s)",
        f"status codes:      {dict(sorted(stats.status.items()))}",
        f"logins:            {stats.logins}",
        f"transfers acked:   {stats.transfers}",
        f"rotations seen:    {stats.rotations_seen}",
        f"cookie cleared while signed in (no logout): {stats.cleared_while_signed_in}",
        f"5xx:               {stats.errors_5xx}",
        f"sessions lost:     {stats.sessions_lost}",
        f"writes lost:       {stats.writes_lost}",
        f"transport errors:  {stats.transport_errors}",
        f"server tracebacks: {tracebacks}",
        f"workers alive:     {alive}",
        f"result:            {'PASS' if ok else 'FAIL'}  (wall {elapsed:.1f}s)",
    ]
    lines += [f"  - {d}" for d in stats.details]
    return ok, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to drive (60)")
    parser.add_argument(
        "--store", choices=("redis", "sqlite", "both"), default="both", help="(both)"
    )
    parser.add_argument("--users", type=int, default=30, help="simulated users (30)")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="one request at a time per user (no parallel asset fetches)",
    )
    parser.add_argument(
        "--keep-logs", type=Path, default=None, metavar="DIR", help="copy the demos' logs here"
    )
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 3600 or not 0 < args.users <= 500:
        parser.error("--seconds must be in (0, 3600] and --users in (0, 500]")
    kinds = ["redis", "sqlite"] if args.store == "both" else [args.store]
    all_ok = True
    for kind in kinds:
        ok, report = run_one(kind, args.seconds, args.users, not args.sequential, args.keep_logs)
        print(report, flush=True)
        all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
