"""Django peers, configured in-process with ``settings.configure``: the bare handler (no
middleware) and SecurityMiddleware + SessionMiddleware (cache backend on Redis) +
CsrfViewMiddleware with a GET that writes the session (its "write" row: it reads one key and
sets another), and a sign-in: what ``django.contrib.auth.login()`` does to the session and the
CSRF token (``cycle_key``, the user's keys, ``rotate_token``), without its database (the user
model and its ``last_login`` write), so the peer's figure is, if anything, too low."""

from __future__ import annotations

from typing import Any

from ..common import HOST, REDIS_URL, USER, NotInstalled, Row, WsgiClient, drop_prefix, expect
from ..common import unique_prefix as _unique_prefix

OK = USER.encode()
STACK = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
]
_PREFIX = _unique_prefix("django")


def _bare(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(b"-")


def _home(request: Any) -> Any:
    from django.http import HttpResponse
    from django.middleware.csrf import get_token

    s = request.session
    s["visits"] = int(s.get("visits", 0)) + 1
    get_token(request)
    return HttpResponse(str(s.get("user")).encode())


def _sign_in(request: Any) -> Any:
    from django.http import HttpResponse
    from django.middleware.csrf import rotate_token

    s = request.session
    s.cycle_key()
    s["_auth_user_id"] = USER
    s["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    s["_auth_user_hash"] = "0" * 64
    s["user"] = USER
    rotate_token(request)
    return HttpResponse(USER.encode())


def _login(request: Any) -> Any:
    from django.http import HttpResponse

    s = request.session
    s.cycle_key()
    s["user"] = USER
    s["theme"] = "dark"
    s["lang"] = "en"
    s["cart"] = 3
    return HttpResponse(b"ok")


def _urls() -> list[Any]:
    from django.urls import path

    return [
        path("", _home),
        path("bare", _bare),
        path("login", _login),
        path("signin", _sign_in),
    ]


urlpatterns: list[Any] = []


def _configure() -> None:
    try:
        import django
        from django.conf import settings
    except ImportError as exc:
        raise NotInstalled(str(exc)) from None
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-secret-key-0123456789abcdef-0123456789",
        ALLOWED_HOSTS=[HOST],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=STACK,
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": REDIS_URL,
                "KEY_PREFIX": _PREFIX,
            }
        },
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        SESSION_COOKIE_SECURE=True,
        CSRF_COOKIE_SECURE=True,
        SECURE_HSTS_SECONDS=31_536_000,
        SECURE_CONTENT_TYPE_NOSNIFF=True,
    )
    django.setup()
    urlpatterns[:] = _urls()


def _handler(middleware: list[str]) -> Any:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    settings.MIDDLEWARE = middleware
    try:
        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = STACK


class BareDjango(Row):
    name = "bare Django GET"
    base = "bare Django GET"

    def setup(self) -> None:
        _configure()
        self.client = WsgiClient(_handler([]))
        self.run(1)

    def run(self, n: int) -> None:
        request = self.client.request
        for _ in range(n):
            status, body, _ = request("GET", "/bare")
            expect(status, body, 200, b"-", self.name)


class DjangoStack(Row):
    base = "bare Django GET"
    redis = True

    def __init__(self, *, sign_in: bool = False) -> None:
        self.sign_in = sign_in
        self.name = "Django sessions(redis)+CSRF+Security " + (
            "sign-in" if sign_in else "GET writes"
        )

    def setup(self) -> None:
        _configure()
        self.client = WsgiClient(_handler(STACK))
        status, body, _ = self.client.request("GET", "/login")
        expect(status, body, 200, b"ok", "login")
        status, body, _ = self.client.request("GET", "/")  # the csrftoken cookie
        expect(status, body, 200, OK, "first GET")
        self.run(1)

    def run(self, n: int) -> None:
        request, jar = self.client.request, self.client.jar
        if self.sign_in:
            for _ in range(n):
                headers = [
                    ("x-csrftoken", jar.values["csrftoken"]),
                    ("referer", "https://app.test/"),
                ]
                status, body, _ = request("POST", "/signin", headers)
                expect(status, body, 200, OK, self.name)
            return
        for _ in range(n):
            status, body, _ = request("GET", "/")
            expect(status, body, 200, OK, self.name)

    def close(self) -> None:
        drop_prefix(_PREFIX)
