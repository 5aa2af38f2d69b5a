"""A redis-server of a test's own: for tests that pause, kill or restart Redis.

Such a test must never touch the shared server on 127.0.0.1:6379: a ``CLIENT PAUSE`` or a
``CLIENT KILL`` there stalls or drops every other test run using it at the same time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import IN_CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of this test's own (loopback, free port, AOF with fsync always, so a
    kill -9 and restart loses nothing acknowledged)."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            if IN_CI:
                pytest.fail("redis-server is not installed (CI=true requires it)")
            pytest.skip("redis-server is not installed")
        self.exe = exe
        self.dir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            [
                self.exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60  # generous: the machine may be loaded
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_timeout=2).ping()
                return
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def command(self, *args: Any) -> Any:
        import redis

        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            return client.execute_command(*args)
        finally:
            client.close()
