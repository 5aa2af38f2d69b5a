"""Every command and code block of README.md and docs/ is run, as a new user would run it.

Each fenced block names its kind:

* ``python``: executed as it stands, in a fresh namespace and an empty directory (top-level
  ``await`` allowed). A snippet must import what it uses.
* ``sh``: each command is run. ``pip install`` lines are checked against pyproject.toml (the extra
  exists, and it installs what that page's snippets import) instead of reaching a registry;
  servers (``sessionwarden demo``, ``uvicorn``, ``flask run``, ``python -m ...flask_main``) are
  started on a free port, must answer HTTP, and are stopped; ``python -m pytest`` is this suite.
* ``console``: ``$ command`` lines are run and their exit status and output compared with what
  the block shows, after replacing what differs from run to run (references, times, addresses).
* ``text``, ``html``, ``nginx``: not commands: a synopsis, output recorded from a measured run
  (docs/reliability.md: load, fault and fuzzing runs of minutes each), a template fragment, a
  proxy configuration.

A block without a kind fails, so nothing new goes unchecked.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "sh", "console"}
RECORDS = {"text", "html", "nginx"}
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)

#: Module prefix -> the distribution (as named in pyproject.toml) that provides it.
PROVIDERS = {
    "starlette": "starlette",
    "fastapi": "fastapi",
    "flask": "flask",
    "werkzeug": "flask",
    "httpx": "httpx",
    "redis": "redis",
    "jinja2": "jinja2",
    "pydantic": "fastapi",
}
#: The extra each page installs (its ``pip install`` line).
PAGE_EXTRA = {"asgi.md": "asgi", "fastapi.md": "fastapi", "flask.md": "flask"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    kind: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks() -> list[Block]:
    found: list[Block] = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Block(page, line, match.group(1), match.group(2)))
    return found


ALL = blocks()


def of_kind(*kinds: str) -> list[Any]:
    return [pytest.param(b, id=b.id) for b in ALL if b.kind in kinds]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(SRC), str(ROOT)])
    e.pop("SESSIONWARDEN_STORE", None)
    e.pop("SESSIONWARDEN_SECRET", None)
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- every block is classified --------------------------------------------------------------------


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in ALL])
def test_every_block_has_a_kind(block: Block) -> None:
    if block.page.name == "architecture.md" and "──►" in block.code:
        return  # a diagram
    assert block.kind in RUN | RECORDS, f"{block.id}: a fenced block needs a kind: {RUN | RECORDS}"


# -- python ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", of_kind("python"))
def test_python_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    monkeypatch.delenv("SESSIONWARDEN_STORE", raising=False)
    code = compile(
        block.code, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    namespace: dict[str, Any] = {"__name__": "snippet"}
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)


def _imports(code: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    extras: dict[str, list[str]] = data["project"]["optional-dependencies"]
    return extras


def _closure(extra: str) -> set[str]:
    """The distributions an extra installs, following ``sessionwarden[...]`` references."""
    extras = _extras()
    names: set[str] = set()
    for req in extras[extra]:
        name = re.split(r"[\[<>=!~ ;]", req, maxsplit=1)[0].lower()
        if name == "sessionwarden":
            inner = re.search(r"\[(.*?)\]", req)
            for sub in inner.group(1).split(",") if inner else ():
                names |= _closure(sub.strip())
        else:
            names.add(name)
    return names


@pytest.mark.parametrize("page", sorted(PAGE_EXTRA))
def test_each_extra_installs_what_its_page_uses(page: str) -> None:
    installed = _closure(PAGE_EXTRA[page])
    used: set[str] = set()
    for block in ALL:
        if block.page.name == page and block.kind == "python":
            used |= _imports(block.code)
    needed = {PROVIDERS[m] for m in used if m in PROVIDERS} - {"httpx"}  # httpx: tests only
    assert needed <= installed, f"{page}: pip install 'sessionwarden[{PAGE_EXTRA[page]}]' lacks"
    runs_uvicorn = any("uvicorn" in b.code for b in ALL if b.page.name == page and b.kind == "sh")
    if runs_uvicorn:
        assert "uvicorn" in installed


def test_the_demo_extra_runs_both_demos() -> None:
    installed = _closure("demo")
    assert {"uvicorn", "starlette", "jinja2", "flask"} <= installed


# -- sh ----------------------------------------------------------------------------------------


SERVERS = (
    (re.compile(r"^sessionwarden demo\b"), [sys.executable, "-m", "sessionwarden.cli", "demo"]),
    (re.compile(r"^python -m sessionwarden\.demo\.flask_main\b"), None),
    (re.compile(r"^uvicorn\b"), None),
    (re.compile(r"^flask\b.* run\b"), None),
)


def _check_pip(command: str) -> None:
    words = shlex.split(command)
    assert words[:2] == ["pip", "install"], command
    for word in words[2:]:
        spec = re.fullmatch(r"(?:-e )?(?:\.|sessionwarden)\[([\w,]+)\]", word)
        if spec is None:
            assert word == "-e", f"unexpected pip argument {word!r}"
            continue
        for extra in spec.group(1).split(","):
            assert extra in _extras(), f"no extra {extra!r} in pyproject.toml"


def _server(command: str, cwd: Path, environ: dict[str, str], logs: Path) -> None:
    """Start a documented server command on a free port, wait for an HTTP answer, stop it."""
    words = shlex.split(command.split("#", 1)[0])
    port = free_port()
    if words[0] == "sessionwarden":
        argv = [sys.executable, "-m", "sessionwarden.cli", *words[1:]]
    elif words[0] == "python":
        argv = [sys.executable, *words[1:]]
    else:  # uvicorn, flask: their own modules
        argv = [sys.executable, "-m", *words]
    argv += ["--port", str(port)]
    log = logs / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, f"{command!r} exited:\n{log.read_text()}"
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
                assert status < 500, f"{command!r}: GET / answered {status}"
                return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"{command!r} did not answer:\n{log.read_text()}"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _shell_value(expression: str, environ: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", "-c", f"printf %s {expression}"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.parametrize("block", of_kind("sh"))
def test_sh_block_runs(block: Block, tmp_path: Path) -> None:
    environ = env()
    # "python" in a command is this interpreter.
    environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environ["PATH"]])
    for raw in block.code.splitlines():
        line = raw.split("  #", 1)[0].strip()
        for command in (c.strip() for c in line.split("&&")):
            if not command:
                continue
            export = re.fullmatch(r"export (\w+)=(.*)", command)
            if export:
                environ[export.group(1)] = _shell_value(export.group(2), environ)
            elif command.startswith("pip install"):
                _check_pip(command)
            elif command == "python -m pytest":
                assert "pytest" in _closure("test")  # this very suite
            elif any(pattern.search(command) for pattern, _ in SERVERS):
                cwd = tmp_path if command.startswith("sessionwarden demo") else ROOT
                _server(command, cwd, environ, tmp_path)
            else:
                pytest.fail(f"{block.id}: no rule to run {command!r}")


# -- console -------------------------------------------------------------------------------------


@dataclass
class Step:
    command: str
    expected: list[str]
    status: int


def _steps(code: str) -> Iterator[Step]:
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            i += 1
            continue
        command = lines[i][2:]
        i += 1
        expected: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            if lines[i]:
                expected.append(lines[i])
            i += 1
        status = 0
        if i < len(lines) and lines[i] == "$ echo $?":
            status = int(lines[i + 1])
            i += 2
        yield Step(command, expected, status)


_VARYING = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"\b[0-9a-f]{8,64}\b"), "<ref>"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "<n>"),
]


def _shape(line: str) -> str:
    for pattern, token in _VARYING:
        line = pattern.sub(token, line)
    return " ".join(line.split())


def _world(directory: Path) -> dict[str, str]:
    """The world of docs/cli.md: alice on a laptop and a phone, bob with curl, two expired
    sessions of carol. Returns the documented references -> the real ones."""
    from sessionwarden.clock import ManualClock
    from sessionwarden.core import Engine
    from sessionwarden.policy import Policy
    from sessionwarden.stores.sqlite import SQLiteStore

    from .conftest import SECRET
    from .test_engine import Client, login

    store = SQLiteStore(directory / "sessions.db")
    clock = ManualClock(time.time() - 7200)
    engine = Engine(Policy(secret_keys=(SECRET,), idle_timeout=1800.0), clock=clock)
    for ip, ua in (("192.0.2.1", "curl/8.5.0"), ("192.0.2.1", "curl/8.5.0")):
        login(Client(engine, store, ua=ua, ip=ip), "carol")  # expired by now
    clock.advance(7200 - 300)
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
    laptop = Client(engine, store, ua=firefox, ip="198.51.100.7")
    refs = {"5df5ea98751a6281": login(laptop, "alice").ref}
    clock.advance(90)
    phone = Client(
        engine,
        store,
        ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Version/17.0 Safari/604.1",
        ip="203.0.113.9",
    )
    refs["66379ac3a2b35284"] = login(phone, "alice").ref
    login(Client(engine, store, ua="curl/8.5.0", ip="192.0.2.44"), "bob")
    clock.advance(100)
    laptop.request()  # a second entry in the laptop's activity trail, as shown
    clock.advance(90)
    laptop.request()
    store.close()
    return refs


def _real_command(command: str, refs: dict[str, str]) -> list[str]:
    words = shlex.split(command.split("  #", 1)[0])
    out: list[str] = []
    for word in words:
        for doc, real in refs.items():
            if len(word) >= 8 and doc.startswith(word):
                word = real[: len(word)]
        out.append(word)
    return out


@pytest.mark.parametrize("block", of_kind("console"))
def test_console_block_runs(block: Block, tmp_path: Path) -> None:
    """Each ``$`` command runs with the documented exit status; its output has the documented
    first line, up to what changes from run to run."""
    refs = _world(tmp_path)
    environ = env()
    for step in _steps(block.code):
        if step.command.startswith("pip install"):
            _check_pip(step.command)
            continue
        if step.command.startswith("echo "):
            continue
        argv = _real_command(step.command, refs)
        assert argv[0] == "sessionwarden", step.command
        run_env = dict(environ)
        busy = None
        if "# while another server listens on" in step.command:
            busy = socket.socket()
            port = int(step.command.rsplit(" ", 1)[-1])
            try:
                busy.bind(("127.0.0.1", port))
                busy.listen()
            except OSError:
                pass  # in use already: as documented
        if step.expected and "the demo needs uvicorn" in step.expected[0]:
            # "Without them": a machine where uvicorn is not installed.
            hidden = tmp_path / "no-uvicorn" / "uvicorn"
            hidden.mkdir(parents=True)
            (hidden / "__init__.py").write_text(
                "raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n"
            )
            run_env["PYTHONPATH"] = os.pathsep.join([str(hidden.parent), environ["PYTHONPATH"]])
        try:
            result = subprocess.run(
                [sys.executable, "-m", "sessionwarden.cli", *argv[1:]],
                cwd=tmp_path,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            if busy is not None:
                busy.close()
        assert result.returncode == step.status, (step.command, result.stdout, result.stderr)
        output = (result.stdout + result.stderr).splitlines()
        if step.expected:
            assert output, step.command
            assert _shape(output[0]) == _shape(step.expected[0]), (step.command, output)


# -- names the reference pages list -------------------------------------------------------------


def test_every_event_kind_is_in_the_architecture_table() -> None:
    """docs/architecture.md lists the event kinds an operator can see; a new kind must be there."""
    from sessionwarden.events import EventKind

    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [
        k.value
        for k in EventKind
        if f"`{k.value}`" not in text and f"`{k.value.split('.')[0]}.*`" not in text
    ]
    assert not missing, f"docs/architecture.md, Events: {missing}"
