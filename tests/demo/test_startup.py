"""The demo's start-up, run for real (``python -m sessionwarden.demo`` and its Flask twin): every
mistake a first-time user makes ends before anything is printed or created, with one line in the
one error form, ``sessionwarden: error: ...``, and an exit status that says which kind of mistake.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from ..conftest import redis_or_skip
from .conftest import FLASK_DEMO, SRC, STARLETTE_DEMO, free_port, run_demo

MODULES = [STARLETTE_DEMO, FLASK_DEMO]
EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_CANNOT_LISTEN = 2, 3, 4


def start(
    module: str, args: Sequence[str], cwd: Path, *, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.pop("SESSIONWARDEN_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", module, "--host", "127.0.0.1", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line; the demo printed nothing else (no URL, no password)."""
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sessionwarden: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another server is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


# -- 2: a port in use ---------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_port_in_use_prints_nothing_creates_nothing(
    module: str, busy_port: int, tmp_path: Path
) -> None:
    result = start(module, ["--port", str(busy_port)], tmp_path)
    assert result.returncode == EXIT_CANNOT_LISTEN
    line = one_error(result)
    assert f"127.0.0.1:{busy_port}" in line and "already in use" in line
    assert "password" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no database, no key, no data directory


def test_evil_port_in_use_is_the_same_error(busy_port: int, tmp_path: Path) -> None:
    result = start(
        STARLETTE_DEMO, ["--port", str(free_port()), "--evil-port", str(busy_port)], tmp_path
    )
    assert result.returncode == EXIT_CANNOT_LISTEN
    assert str(busy_port) in one_error(result)
    assert list(tmp_path.iterdir()) == []


# -- 3: a store that cannot be used -------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_refused_redis_connection_is_named_at_start(module: str, tmp_path: Path) -> None:
    result = start(
        module, ["--port", str(free_port()), "--store", "redis://127.0.0.1:1/0"], tmp_path
    )
    assert result.returncode == EXIT_UNAVAILABLE
    line = one_error(result)
    assert "store unavailable" in line and "127.0.0.1:1" in line and "refused" in line.lower()
    assert list(tmp_path.iterdir()) == []


def test_redis_database_out_of_range_is_named_at_start(tmp_path: Path) -> None:
    redis_or_skip()
    result = start(
        STARLETTE_DEMO,
        ["--port", str(free_port()), "--store", "redis://127.0.0.1:6379/99"],
        tmp_path,
    )
    assert result.returncode == EXIT_UNAVAILABLE
    line = one_error(result)
    assert "db 99" in line and "DB index is out of range" in line
    assert "unreachable" not in line


def test_redis_password_is_never_printed(tmp_path: Path) -> None:
    url = "redis://:hunter2secret@127.0.0.1:1/0"
    result = start(STARLETTE_DEMO, ["--port", str(free_port()), "--store", url], tmp_path)
    assert result.returncode == EXIT_UNAVAILABLE
    assert "hunter2secret" not in result.stderr + result.stdout


# -- 7: store paths -----------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
def test_missing_directory_is_an_error_not_created(module: str, tmp_path: Path) -> None:
    db = tmp_path / "no" / "such" / "dir" / "x.db"
    result = start(module, ["--port", str(free_port()), "--store", f"sqlite:///{db}"], tmp_path)
    assert result.returncode == EXIT_UNAVAILABLE
    line = one_error(result)
    assert str(db) in line and "does not exist" in line
    assert not (tmp_path / "no").exists()


def test_unusable_sqlite_path_names_the_path(tmp_path: Path) -> None:
    (tmp_path / "adir.db").mkdir()
    result = start(
        STARLETTE_DEMO,
        ["--port", str(free_port()), "--store", f"sqlite:///{tmp_path}/adir.db"],
        tmp_path,
    )
    assert result.returncode == EXIT_UNAVAILABLE
    line = one_error(result)
    assert f"{tmp_path}/adir.db" in line and "directory" in line
    assert "key" not in line


def test_missing_data_dir_parent_is_an_error(tmp_path: Path) -> None:
    result = start(
        STARLETTE_DEMO,
        ["--port", str(free_port()), "--data-dir", str(tmp_path / "a" / "b")],
        tmp_path,
    )
    assert result.returncode == EXIT_USAGE
    assert "parent directory does not exist" in one_error(result)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("module", MODULES)
def test_data_directory_holds_store_and_key_and_ignores_itself(module: str, tmp_path: Path) -> None:
    """With no --store, the SQLite file and the key live in one directory of the demo's own,
    with a .gitignore, and nothing lands in the current directory itself."""
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    env.pop("SESSIONWARDEN_SECRET", None)
    work = tmp_path / "cwd"
    work.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), "--user", "ann:pw-pw-pw-pw"],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(port, proc)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert sorted(p.name for p in work.iterdir()) == ["sessionwarden-demo"]
    names = sorted(p.name for p in (work / "sessionwarden-demo").iterdir())
    assert ".gitignore" in names and "sessions.db" in names
    assert "sessionwarden-demo.key" in names
    assert (work / "sessionwarden-demo" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert "sessionwarden-demo/sessionwarden-demo.key" in out


def _wait_for(port: int, proc: subprocess.Popen[str]) -> None:
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/static/demo.css", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    pytest.fail("the demo did not start")


# -- 9: one error form --------------------------------------------------------------------------


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--store", "sessions.db"], "did you mean `sqlite:///sessions.db`?"),
        (["--port", "99999"], "--port: 99999 is not a port number"),
        (["--idle-timeout", "-5"], "idle_timeout"),
        (["--trusted-proxy", "not-an-address"], "--trusted-proxy"),
        (["--user", "no-colon"], "--user"),
        (["--port", "eighty"], "invalid int value"),
    ],
)
def test_usage_errors_share_one_form(
    module: str, args: list[str], expected: str, tmp_path: Path
) -> None:
    result = start(module, args, tmp_path)
    assert result.returncode == EXIT_USAGE
    assert expected in one_error(result)
    assert list(tmp_path.iterdir()) == []


def test_cli_and_demo_errors_look_alike(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    cli = subprocess.run(
        [sys.executable, "-m", "sessionwarden.cli", "sessions", "stats", "--store", "x.db"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    demo = start(STARLETTE_DEMO, ["--store", "x.db"], tmp_path)
    assert cli.returncode == demo.returncode == EXIT_USAGE
    assert cli.stderr == demo.stderr
    assert cli.stderr.startswith("sessionwarden: error: ") and "sqlite:///x.db" in cli.stderr


# -- 8 and 14: network addresses, proxies, attacks off ------------------------------------------


def test_plain_http_on_a_network_address_warns_at_start(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", STARLETTE_DEMO, "--host", "0.0.0.0", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(port, proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    warning = [ln for ln in err.splitlines() if ln.startswith("warning: serving plain HTTP")]
    assert len(warning) == 1
    assert "redirected to HTTPS (308)" in warning[0] and "--trusted-proxy" in warning[0]


@pytest.mark.parametrize("module", MODULES)
def test_loopback_or_trusted_proxy_gives_no_warning(module: str, tmp_path: Path) -> None:
    for extra in ([], ["--trusted-proxy", "10.0.0.0/8"]):
        with run_demo(
            f"sqlite:///{tmp_path}/d.db", tmp_path / "k", tmp_path, extra_args=extra, module=module
        ) as srv:
            pass
        assert "warning: serving plain HTTP" not in srv.output()


@pytest.mark.parametrize("module", MODULES)
def test_trusted_proxy_headers_are_believed_only_from_the_proxy(
    module: str, tmp_path: Path
) -> None:
    """Behind a TLS proxy on loopback (``--trusted-proxy 127.0.0.1``), a request the proxy
    marks ``X-Forwarded-Proto: https`` is served, not redirected; without the option the same
    header from the same peer is ignored (plain loopback HTTP is served either way, so the
    client address the proxy names is what differs: it is the one the session records)."""
    with run_demo(
        f"sqlite:///{tmp_path}/d.db",
        tmp_path / "k",
        tmp_path,
        extra_args=["--trusted-proxy", "127.0.0.1", "--trusted-proxy", "::1"],
        module=module,
    ) as srv:
        r = httpx.get(
            srv.base_url + "/",
            headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"},
        )
        assert r.status_code == 200
        assert "strict-transport-security" in r.headers  # the proxy said HTTPS: HSTS is sent
        assert '"ip":"203.0.113.9"' in srv.stderr.read_text()
    with run_demo(f"sqlite:///{tmp_path}/e.db", tmp_path / "k", tmp_path, module=module) as srv:
        r = httpx.get(
            srv.base_url + "/",
            headers={"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"},
        )
        assert r.status_code == 200 and "strict-transport-security" not in r.headers
        assert "203.0.113.9" not in srv.stderr.read_text()


@pytest.mark.parametrize("module", MODULES)
def test_the_json_api_fails_over_plain_http_and_pages_are_redirected(
    module: str, tmp_path: Path
) -> None:
    """Behind a proxy that reports plain HTTP, the demo's pages are redirected to HTTPS and its
    JSON API under ``/api`` is refused (403, no redirect, no cookie), whatever the client
    accepts; nothing of either is served."""
    plain = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "http"}
    with run_demo(
        f"sqlite:///{tmp_path}/d.db",
        tmp_path / "k",
        tmp_path,
        extra_args=["--trusted-proxy", "127.0.0.1"],
        module=module,
    ) as srv:
        page = httpx.get(srv.base_url + "/login", headers=plain)
        assert page.status_code == 308 and page.headers["location"].startswith("https://")
        for path in ("/api/me", "/api/csrf"):
            r = httpx.get(srv.base_url + path, headers=plain)
            assert r.status_code == 403, (path, r.status_code)
            assert "location" not in r.headers and "set-cookie" not in r.headers
        r = httpx.post(srv.base_url + "/api/transfer", headers=plain, json={"to": "x"})
        assert r.status_code == 403 and r.json()["error"] == "https-required"


@pytest.mark.parametrize("module", MODULES)
def test_no_attacks_leaves_out_the_comment_sink(module: str, tmp_path: Path) -> None:
    with run_demo(
        f"sqlite:///{tmp_path}/d.db",
        tmp_path / "k",
        tmp_path,
        extra_args=["--no-attacks"],
        module=module,
    ) as srv:
        assert httpx.get(srv.base_url + "/attacks").status_code == 404
        assert httpx.post(srv.base_url + "/attacks/comment").status_code in (403, 404)
        home = httpx.get(srv.base_url + "/").text
        assert 'href="/attacks"' not in home
        assert httpx.get(srv.base_url + "/account").status_code == 303
