"""The checks every multi-worker server set-up must pass (imported by
``tests/test_servers_gunicorn_flask.py`` and ``tests/test_servers_asgi_workers.py``, whose
``served`` fixture is the server).

Every response names the worker process that served it (``X-Worker``), so each check is made
on every worker, or on another worker than the one that wrote, with a real cookie jar over TLS
(``tests/production_servers.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx

from .live_servers import AGENT
from .production_servers import Served, errors_in, stop_process, worker


def test_a_session_signed_in_on_one_worker_is_the_same_on_every_worker(served: Served) -> None:
    browser = served.browser()
    browser.sign_in()
    cookie = browser.cookie()
    for responses in browser.each_worker().values():
        assert all(r.json()["user"] == "alice" for r in responses)
    assert browser.cookie() == cookie  # the same session, not a new one per worker


def test_a_write_acknowledged_by_one_worker_is_read_by_the_next_request_on_another(
    served: Served,
) -> None:
    browser = served.browser()
    browser.sign_in()
    token, _ = browser.token()
    for n in range(5):
        written = browser.put(f"key{n}", f"value{n}", token)
        assert written.status_code == 200, written.text
        other, same = browser.on_another_worker(worker(written))
        for r in [*same, other]:
            assert r.json()["data"].get(f"key{n}") == f"value{n}", (n, r.json())


def test_a_csrf_token_issued_by_one_worker_is_accepted_by_every_worker(served: Served) -> None:
    browser = served.browser()
    browser.sign_in()
    token, issuer = browser.token()
    accepted = browser.each_worker(lambda: browser.put("k", "v", token))
    for pid, responses in accepted.items():
        assert [r.status_code for r in responses] == [200] * len(responses), pid
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    refused = browser.each_worker(lambda: browser.put("k", "forged", forged))
    for responses in refused.values():
        assert all(r.status_code == 403 for r in responses)
    assert browser.state()["data"]["k"] == "v"
    assert issuer in accepted


def test_a_logout_on_one_worker_refuses_the_old_cookie_on_every_worker(served: Served) -> None:
    browser = served.browser()
    browser.sign_in()
    browser.each_worker()  # every worker has read the session (and its read cache keeps it)
    old = browser.cookie()
    assert old is not None
    token, _ = browser.token()
    out = browser.request("POST", "/logout", data={"csrf_token": token})
    assert out.status_code == 303
    assert browser.cookie() is None
    _refused_everywhere(served, old)


def _refused_everywhere(served: Served, cookie: str) -> None:
    """``cookie`` presented to every worker, from the first request on, is no session: each
    answer is anonymous and deletes the cookie."""
    replay = served.browser()
    for responses in replay.each_worker(lambda: replay.replay(cookie)).values():
        for r in responses:
            assert r.status_code == 200 and r.json()["user"] is None, r.text
            assert r.headers.get("set-cookie", "").startswith("__Host-id=;"), r.headers


def test_sign_out_everywhere_on_one_worker_ends_the_other_sessions_on_every_worker(
    served: Served,
) -> None:
    laptop, phone = served.browser(), served.browser()
    laptop.sign_in()
    phone.sign_in()
    laptop.each_worker()
    phone.each_worker()
    cookie = laptop.cookie()
    assert cookie is not None
    token, _ = phone.token()
    r = phone.request("POST", "/revoke-all", data={"csrf_token": token})
    assert r.status_code == 200 and r.json()["ended"] >= 2, r.text
    _refused_everywhere(served, cookie)


def test_concurrent_writes_on_one_session_are_all_kept(served: Served) -> None:
    browser = served.browser()
    browser.sign_in()
    token, _ = browser.token()
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda n: browser.put(f"c{n}", str(n), token), range(36)))
    assert [r.status_code for r in results] == [200] * 36, [
        r.text for r in results if r.status_code != 200
    ]
    assert len({worker(r) for r in results}) > 1
    data = browser.state()["data"]
    assert {k: v for k, v in data.items() if k.startswith("c")} == {
        f"c{n}": str(n) for n in range(36)
    }


def test_a_burst_of_sign_ins_and_writes_from_many_browsers_never_fails(served: Served) -> None:
    def visit(n: int) -> list[int]:
        browser = served.browser(agent=AGENT)
        token, _ = browser.token()
        data = {"user": "alice", "password": "wonderland", "csrf_token": token}
        codes = [browser.request("POST", "/login", data=data).status_code]
        token, _ = browser.token()
        codes += [browser.put(f"b{i}", str(n), token).status_code for i in range(3)]
        state = browser.state()
        assert state["user"] == "alice" and state["data"]["b2"] == str(n)
        return codes

    with ThreadPoolExecutor(12) as pool:
        codes = [c for result in pool.map(visit, range(24)) for c in result]
    assert codes == [303, 200, 200, 200] * 24


def test_a_chunked_form_post_is_checked_like_any_other(served: Served) -> None:
    """A form body sent without a length (chunked): the token in it is read and checked, and
    the app gets the whole form."""
    browser = served.browser()
    browser.sign_in()
    token, _ = browser.token()

    def chunked(token: str, value: str) -> httpx.Response:
        body = f"key=chunked&value={value}&csrf_token={token}".encode()

        def parts() -> Iterator[bytes]:
            yield body[:10]
            yield body[10:]

        headers = {"content-type": "application/x-www-form-urlencoded"}
        return browser.request("POST", "/put", content=parts(), headers=headers)

    for responses in browser.each_worker(lambda: chunked(token, "yes")).values():
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    refused = chunked(token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"), "no")
    assert refused.status_code == 403
    assert browser.state()["data"]["chunked"] == "yes"


def stops_cleanly(served: Served) -> None:
    """Nothing in the server's log is an error, every worker is still the one that started,
    and the server stops on SIGTERM with status 0 and still no error logged (what the store's
    connections and threads do at exit included)."""
    assert errors_in(served.log_text()) == []
    stop_process(served.process)
    assert served.process.returncode == 0, served.log_text()[-3000:]
    assert errors_in(served.log_text()) == []
