"""Two demo processes sharing one Redis and one secret key behave as one site."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import REDIS_URL, drop_prefix, redis_or_skip, unique_prefix
from .conftest import Client, DemoServer, form_token, run_demo

pytestmark = pytest.mark.redis


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[DemoServer, DemoServer]]:
    redis_or_skip()
    prefix = unique_prefix()
    store = f"{REDIS_URL}?prefix={prefix}"
    key = tmp_path / "shared.key"
    try:
        with (
            run_demo(store, key, tmp_path / "one") as one,
            run_demo(store, key, tmp_path / "two") as two,
        ):
            yield one, two
    finally:
        drop_prefix(prefix)


def test_sign_in_on_one_sign_out_on_the_other(pair: tuple[DemoServer, DemoServer]) -> None:
    one, two = pair
    assert one.base_url != two.base_url
    on_one = Client(one.base_url)
    on_two = Client(two.base_url)
    try:
        on_one.signed_in("alice")
        assert on_one.api_user() == "alice"

        # The same cookie, presented to the other process, is the same session.
        on_two.cookie = on_one.cookie
        account = on_two.get("/account")
        assert account.status_code == 200
        assert '<span id="account-user">alice</span>' in account.text

        # Sign out on the second process ...
        response = on_two.post("/logout", data={"csrf_token": form_token(account.text)})
        assert response.status_code == 303
        assert on_two.cookie is None

        # ... and the first one refuses the cookie it issued.
        refused = on_one.get("/account")
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login"
        assert on_one.api_user() is None
        assert any('"session.logged_out"' in line for line in two.events())
        assert any('"session.replay.revoked"' in line for line in one.events())
    finally:
        on_one.close()
        on_two.close()


def test_the_shared_key_file_is_created_once_and_private(
    pair: tuple[DemoServer, DemoServer], tmp_path: Path
) -> None:
    key = tmp_path / "shared.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes()) == 32
