"""Header and body size limits: hostile sizes become a clean refusal or an anonymous request,
never a 500 and never an unbounded buffer."""

from __future__ import annotations

import pytest

from sessionwarden.cookies import MAX_COOKIE_HEADER
from sessionwarden.events import EventKind
from sessionwarden.policy import CsrfPolicy, Policy

from ..conftest import SECRET
from .conftest import COOKIE, RigFactory

pytestmark = pytest.mark.anyio

LIMIT = 4096


def _policy() -> Policy:
    return Policy(
        secret_keys=(SECRET,), allowed_hosts=("*",), csrf=CsrfPolicy(max_body_bytes=LIMIT)
    )


async def test_oversized_cookie_header_is_anonymous_not_500(make_rig: RigFactory) -> None:
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    real = b.cookie
    padding = "p=" + "x" * MAX_COOKIE_HEADER
    for header in (
        f"{padding}; {COOKIE}={real}",
        f"{COOKIE}={real}; {padding}",
        f"{COOKIE}={'A' * 100_000}",
        "; ".join(f"c{i}=v" for i in range(5000)) + f"; {COOKIE}={real}",
    ):
        r = await b.get("/whoami", cookie_header=header)
        assert r.status_code == 200 and r.json()["user"] is None
    # and the real session is intact for a normal request
    r = await b.get("/whoami", cookie_header=f"{COOKIE}={real}")
    assert r.json()["user"] == "alice"


async def test_many_cookie_headers_joined_are_bounded_too(make_rig: RigFactory) -> None:
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    import httpx

    headers = [("cookie", f"junk{i}=" + "y" * 200) for i in range(100)]
    headers.append(("cookie", f"{COOKIE}={b.cookie}"))
    b.client.cookies.clear()
    r = await b.client.get("/whoami", headers=httpx.Headers(headers))
    assert r.status_code == 200 and r.json()["user"] is None


async def test_form_body_over_limit_gets_413(make_rig: RigFactory) -> None:
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    t = await b.token()
    r = await b.post(
        "/transfer", data={"csrf_token": t, "to": "x", "amount": "1", "pad": "z" * LIMIT}
    )
    assert r.status_code == 413 and "too large" in r.text
    r = await b.post("/transfer", data={"csrf_token": t, "to": "x", "amount": "1"})
    assert r.status_code == 200


async def test_chunked_form_body_over_limit_gets_413(make_rig: RigFactory) -> None:
    """No Content-Length (streamed): counted while reading, refused past the limit."""
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    t = await b.token()

    async def stream():  # type: ignore[no-untyped-def]
        yield f"csrf_token={t}&pad=".encode()
        for _ in range(20):
            yield b"z" * 1000

    r = await b.post(
        "/transfer", content=stream(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 413
    assert rig.events.count(EventKind.CSRF_REFUSED) == 0


async def test_multipart_body_over_limit_gets_413(make_rig: RigFactory) -> None:
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    t = await b.token()
    r = await b.post(
        "/transfer", data={"csrf_token": t}, files={"f": ("a.bin", b"\0" * (LIMIT * 2))}
    )
    assert r.status_code == 413


async def test_json_body_is_not_buffered_by_the_guard(make_rig: RigFactory) -> None:
    """A JSON body carries its token in the header; the guard never reads it, so its size is the
    app's business (no 413 from the guard, no 500)."""
    rig = make_rig(policy=_policy())
    b = rig.browser()
    await b.login()
    t = await b.token()
    r = await b.post("/client", headers={"x-csrf-token": t}, json={"pad": "z" * (LIMIT * 2)})
    assert r.status_code == 200


def test_wsgi_form_body_over_limit_gets_413(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The WSGI adapter applies the same limit (declared or not)."""
    import io

    from sessionwarden.wsgi import SessionWardenWSGI

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ran"]

    mw = SessionWardenWSGI(app, policy=_policy(), store=f"sqlite:///{tmp_path}/w.db")
    for length in (str(LIMIT * 3), ""):
        body = b"csrf_token=x&pad=" + b"z" * (LIMIT * 3)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/transfer",
            "wsgi.url_scheme": "https",
            "HTTP_HOST": "app.test",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": length,
            "REMOTE_ADDR": "198.51.100.7",
            "wsgi.input": io.BytesIO(body),
            # Without a length, only a server that terminates the input (chunked bodies) lets
            # the middleware read the body to its end (PEP 3333).
            "wsgi.input_terminated": length == "",
        }
        status: list[str] = []
        out = b"".join(mw(environ, lambda s, h, e=None: status.append(s)))  # type: ignore[misc]
        assert status == ["413 Payload Too Large"], (length, status)
        assert b"ran" not in out
    mw.store.close()
