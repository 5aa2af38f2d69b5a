"""Flask peers: the bare app, and Flask-Session (Redis) + Flask-WTF CSRFProtect + Flask-Login with
``strong`` session protection + ``secure`` headers.

Rows: the GET reads the user; "write" is a GET that reads one key and sets another (a cart
counter); "sign-in" is Flask-Login's ``login_user`` with a new session ID (Flask-Session's
``regenerate``)."""

from __future__ import annotations

from typing import Any

from ..common import REDIS_URL, USER, NotInstalled, Row, WsgiClient, drop_prefix, expect
from ..common import unique_prefix as _unique_prefix

OK = USER.encode()


class BareFlask(Row):
    name = "bare Flask GET"
    base = "bare Flask GET"

    def setup(self) -> None:
        try:
            from flask import Flask
        except ImportError as exc:
            raise NotInstalled(str(exc)) from None
        app = Flask("bare")

        @app.get("/")
        def home() -> str:
            return "-"

        self.client = WsgiClient(app)
        self.run(1)

    def run(self, n: int) -> None:
        request = self.client.request
        for _ in range(n):
            status, body, _ = request("GET", "/")
            expect(status, body, 200, b"-", self.name)


class FlaskRedisFloor(Row):
    """Bare Flask answering each request after one Redis round trip (``INCR`` of one key) on a
    plain blocking socket, the command framed once: no session, no cookie, no client library.
    The floor of every Flask-on-Redis write goal on this machine (as
    ``starlette_stack.StarletteRedisFloor`` is for ASGI)."""

    name = "floor: bare Flask + one Redis round trip (raw INCR)"
    base = "bare Flask GET"
    redis = True

    def setup(self) -> None:
        import socket
        from urllib.parse import urlsplit

        try:
            from flask import Flask
        except ImportError as exc:
            raise NotInstalled(str(exc)) from None
        url = urlsplit(REDIS_URL)
        self.prefix = _unique_prefix("floor")
        key = f"{self.prefix}n".encode()
        command = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n" % (len(key), key)
        sock = socket.create_connection((url.hostname, url.port or 6379), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        app = Flask("floor")

        @app.get("/write")
        def write() -> str:
            sock.sendall(command)
            reply = sock.recv(64)  # ":<n>\r\n", one segment on loopback
            return USER if reply.startswith(b":") and reply.endswith(b"\r\n") else "-"

        self.client = WsgiClient(app)
        self.run(1)

    def run(self, n: int) -> None:
        request = self.client.request
        for _ in range(n):
            status, body, _ = request("GET", "/write")
            expect(status, body, 200, OK, self.name)

    def close(self) -> None:
        self.sock.close()
        drop_prefix(self.prefix)


def peer_app(prefix: str) -> Any:
    try:
        import redis
        from flask import Flask, session
        from flask_login import LoginManager, UserMixin, current_user, login_user
        from flask_session import Session
        from flask_wtf.csrf import CSRFProtect, generate_csrf
        from secure import Secure
        from secure.middleware.wsgi import SecureWSGIMiddleware
    except ImportError as exc:
        raise NotInstalled(str(exc)) from None

    app = Flask("peer")
    app.config.update(
        SECRET_KEY="bench-secret-key-0123456789abcdef-0123456789",
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(REDIS_URL),
        SESSION_KEY_PREFIX=prefix,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_PROTECTION="strong",
    )
    Session(app)
    CSRFProtect(app)
    login_manager = LoginManager(app)
    login_manager.session_protection = "strong"

    class User(UserMixin):
        def __init__(self, uid: str) -> None:
            self.id = uid

    @login_manager.user_loader
    def load_user(uid: str) -> User:
        return User(uid)

    @app.get("/")
    def home() -> str:
        return str(current_user.get_id()) if current_user.is_authenticated else "-"

    @app.get("/token")
    def token() -> str:
        return generate_csrf()  # type: ignore[no-any-return]

    @app.post("/login")
    def login() -> str:
        login_user(User(USER))
        session["theme"] = "dark"
        session["lang"] = "en"
        session["cart"] = 3
        return "ok"

    @app.get("/write")
    def write() -> str:
        session["cart"] = int(session.get("cart", 0)) + 1
        return str(current_user.get_id())

    @app.post("/signin")
    def sign_in_again() -> str:
        app.session_interface.regenerate(session)  # type: ignore[attr-defined]
        login_user(User(USER))
        return str(current_user.get_id())

    app.wsgi_app = SecureWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, secure=Secure.with_default_headers()
    )
    return app


#: The request of each row mode: (method, path, label).
MODES = {"get": ("GET", "/", "GET"), "write": ("GET", "/write", "write"),
         "sign-in": ("POST", "/signin", "sign-in")}  # fmt: skip


class FlaskStack(Row):
    base = "bare Flask GET"
    redis = True

    def __init__(self, *, mode: str = "get") -> None:
        self.method, self.path, label = MODES[mode]
        self.name = f"Flask-Session+WTF+Login strong+secure redis {label}"

    def setup(self) -> None:
        self.prefix = _unique_prefix("flasksession")
        self.app = peer_app(self.prefix)
        self.client = WsgiClient(self.app)
        status, body, _ = self.client.request("GET", "/token")
        expect(status, body, 200, None, "token")
        headers = [("x-csrftoken", body.decode()), ("referer", "https://app.test/")]
        status, body, _ = self.client.request("POST", "/login", headers)
        expect(status, body, 200, b"ok", "login")
        self.headers = headers if self.method == "POST" else []
        self.run(1)

    def run(self, n: int) -> None:
        request, method, path, headers = self.client.request, self.method, self.path, self.headers
        for _ in range(n):
            status, body, _ = request(method, path, headers)
            expect(status, body, 200, OK, self.name)

    def close(self) -> None:
        self.app.config["SESSION_REDIS"].close()
        drop_prefix(self.prefix)
