"""``sessionwarden demo --dbsc``: the demo process offers DBSC after sign-in, the spec-written
browser client registers and refreshes against it, and ``/sessions`` marks the bound session.
Both the Starlette and the Flask demo, on SQLite, over plain HTTP to 127.0.0.1 (loopback)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ..dbsc.client import DbscBrowser, Response, parse_registration
from .conftest import FLASK_DEMO, STARLETTE_DEMO, USERS, page_token, run_demo


@pytest.mark.parametrize("module", [STARLETTE_DEMO, FLASK_DEMO], ids=["starlette", "flask"])
def test_demo_dbsc_registers_refreshes_and_shows_the_bound_session(
    module: str, tmp_path: Path
) -> None:
    workdir = tmp_path / "demo"
    with (
        run_demo(
            f"sqlite:///{workdir}/demo.db",
            workdir / "demo.key",
            workdir,
            extra_args=["--dbsc"],
            module=module,
        ) as srv,
        httpx.Client(base_url=srv.base_url, follow_redirects=False, timeout=15) as http,
    ):
        assert "DBSC: registration offered" in srv.output()

        def send(method: str, path: str, headers: dict[str, str]) -> Response:
            http.cookies.clear()
            answer = http.request(method, path, headers=headers)
            http.cookies.clear()
            return Response(answer.status_code, list(answer.headers.multi_items()), answer.content)

        now = [0.0]
        browser = DbscBrowser(send, lambda: now[0])
        token = page_token(browser.request("GET", "/login").body.decode())
        http.cookies.clear()
        cookies = browser.cookie_header()
        signed_in = http.post(
            "/login",
            data={"username": "alice", "password": USERS["alice"], "csrf_token": token},
            headers=cookies,
        )
        assert signed_in.status_code == 303
        browser._store_cookies(
            Response(signed_in.status_code, list(signed_in.headers.multi_items()))
        )
        offer = signed_in.headers.get("secure-session-registration")
        assert offer is not None
        assert browser.register(parse_registration(offer)).status == 200
        page = browser.request("GET", "/sessions")
        assert page.status == 200 and "Device-bound" in page.body.decode()
        # The bound cookie runs out (the client's clock): the page is held back behind a
        # refresh, and still served to alice.
        now[0] += 601
        browser.log.clear()
        assert browser.request("GET", "/sessions").status == 200
        assert browser.log[-2:] == [
            "POST /_sessionwarden/dbsc/refresh -> 200",
            "GET /sessions -> 200",
        ]
        # Without the bound cookie the demo serves the page as to a stranger (sign-in page).
        bare = http.get(
            "/sessions", headers={"cookie": f"__Host-id={browser.cookies['__Host-id'][0]}"}
        )
        assert bare.status_code in (303, 200) and "Device-bound" not in bare.text
