"""Security headers and the Content-Security-Policy."""

from __future__ import annotations

import base64
import os
import threading

import pytest

from sessionwarden import headers as headers_module
from sessionwarden.headers import CspBuilder, HeaderPlan, SecurityHeaders, new_nonce
from sessionwarden.policy import HeadersPolicy

NONCE = "AAAAAAAAAAAAAAAAAAAAAA=="


def plan(
    policy: HeadersPolicy | None = None,
    *,
    https: bool = True,
    nonce: str | None = NONCE,
    existing: set[bytes] | None = None,
    no_store: bool = False,
    logout: bool = False,
) -> HeaderPlan:
    return SecurityHeaders(policy or HeadersPolicy()).response_headers(
        https=https, nonce=nonce, existing=existing or set(), no_store=no_store, logout=logout
    )


def as_dict(p: HeaderPlan) -> dict[bytes, bytes]:
    names = [name for name, _ in p.add]
    assert len(names) == len(set(names)), "a header is added twice"
    assert all(name == name.lower() for name in names)
    return dict(p.add)


DEFAULT_CSP = (
    "default-src 'self'; "
    f"script-src 'nonce-{NONCE}' 'strict-dynamic'; "
    f"style-src 'self' 'nonce-{NONCE}'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
).encode()


def test_default_set_over_https() -> None:
    assert as_dict(plan()) == {
        b"x-content-type-options": b"nosniff",
        b"referrer-policy": b"strict-origin-when-cross-origin",
        b"cross-origin-opener-policy": b"same-origin",
        b"x-frame-options": b"DENY",
        b"cross-origin-resource-policy": b"same-origin",
        b"strict-transport-security": b"max-age=31536000; includeSubDomains",
        b"content-security-policy": DEFAULT_CSP,
    }
    assert plan().drop == set()


def test_hsts_only_over_https() -> None:
    assert b"strict-transport-security" not in as_dict(plan(https=False))


@pytest.mark.parametrize(
    ("policy", "value"),
    [
        (HeadersPolicy(), b"max-age=31536000; includeSubDomains"),
        (HeadersPolicy(hsts_preload=True), b"max-age=31536000; includeSubDomains; preload"),
        (
            HeadersPolicy(hsts_max_age=63_072_000, hsts_preload=True),
            b"max-age=63072000; includeSubDomains; preload",
        ),
        (HeadersPolicy(hsts_include_subdomains=False), b"max-age=31536000"),
        (HeadersPolicy(hsts_max_age=0), b"max-age=0; includeSubDomains"),
    ],
)
def test_hsts_value(policy: HeadersPolicy, value: bytes) -> None:
    assert as_dict(plan(policy))[b"strict-transport-security"] == value


@pytest.mark.parametrize(
    "name",
    [
        b"x-content-type-options",
        b"referrer-policy",
        b"cross-origin-opener-policy",
        b"x-frame-options",
        b"cross-origin-resource-policy",
        b"strict-transport-security",
        b"content-security-policy",
    ],
)
def test_app_header_wins(name: bytes) -> None:
    p = plan(existing={name})
    assert name not in as_dict(p)
    assert p.drop == set()


@pytest.mark.parametrize(
    ("field", "name"),
    [
        ("referrer_policy", b"referrer-policy"),
        ("cross_origin_opener_policy", b"cross-origin-opener-policy"),
        ("frame_options", b"x-frame-options"),
        ("cross_origin_resource_policy", b"cross-origin-resource-policy"),
    ],
)
def test_optional_header_off(field: str, name: bytes) -> None:
    assert name not in as_dict(plan(HeadersPolicy(**{field: None})))  # type: ignore[arg-type]


def test_custom_values() -> None:
    headers = as_dict(
        plan(HeadersPolicy(frame_options="SAMEORIGIN", referrer_policy="no-referrer"))
    )
    assert headers[b"x-frame-options"] == b"SAMEORIGIN"
    assert headers[b"referrer-policy"] == b"no-referrer"


def test_header_value_injection_refused() -> None:
    with pytest.raises(ValueError, match="x-frame-options"):
        SecurityHeaders(HeadersPolicy(frame_options="DENY\r\nSet-Cookie: x=1"))


# --- Cache-Control and Clear-Site-Data ----------------------------------------------------------


def test_no_store_added() -> None:
    p = plan(no_store=True)
    assert as_dict(p)[b"cache-control"] == b"no-store"
    assert p.drop == set()


def test_no_store_overrides_the_apps_cache_control() -> None:
    p = plan(no_store=True, existing={b"cache-control"})
    assert as_dict(p)[b"cache-control"] == b"no-store"
    assert p.drop == {b"cache-control"}


def test_no_store_only_when_asked_and_allowed() -> None:
    assert b"cache-control" not in as_dict(plan(no_store=False))
    p = plan(HeadersPolicy(no_store=False), no_store=True, existing={b"cache-control"})
    assert b"cache-control" not in as_dict(p)
    assert p.drop == set()


def test_clear_site_data_on_logout() -> None:
    assert as_dict(plan(logout=True))[b"clear-site-data"] == b'"cookies", "storage"'
    assert b"clear-site-data" not in as_dict(plan(logout=False))


def test_clear_site_data_cache_opt_in() -> None:
    value = as_dict(plan(HeadersPolicy(clear_site_data_cache=True), logout=True))
    assert value[b"clear-site-data"] == b'"cookies", "storage", "cache"'


def test_clear_site_data_off_or_set_by_app() -> None:
    off = HeadersPolicy(clear_site_data_on_logout=False)
    assert b"clear-site-data" not in as_dict(plan(off, logout=True))
    assert b"clear-site-data" not in as_dict(plan(logout=True, existing={b"clear-site-data"}))


def test_disabled_adds_nothing() -> None:
    p = plan(HeadersPolicy(enabled=False), no_store=True, logout=True, existing={b"cache-control"})
    assert p == HeaderPlan([], set())


@pytest.mark.parametrize("https", [True, False])
@pytest.mark.parametrize("nonce", [NONCE, None])
@pytest.mark.parametrize("no_store", [True, False])
def test_the_precomputed_answer_equals_the_looked_up_one(
    https: bool, nonce: str | None, no_store: bool
) -> None:
    """One function, two ways to the answer: with none of our names set by the app the headers
    are precomputed; with one of them set each is looked up. When the app's header is one this
    response would not carry anyway (``Clear-Site-Data`` without a logout), both agree."""
    sh = SecurityHeaders(HeadersPolicy())
    assert b"clear-site-data" in sh.names
    precomputed = sh.response_headers(https, nonce, frozenset(), no_store, False)
    looked_up = sh.response_headers(https, nonce, frozenset({b"clear-site-data"}), no_store, False)
    assert precomputed == looked_up


def test_plan_unpacks_as_a_pair() -> None:
    add, drop = plan()
    assert isinstance(add, list)
    assert isinstance(drop, (set, frozenset)) and not drop


# --- CSP ------------------------------------------------------------------------------------------


def test_csp_contains_the_nonce_and_every_default_directive() -> None:
    nonce = new_nonce()
    value = CspBuilder(HeadersPolicy()).value(nonce).decode()
    directives = dict(d.split(" ", 1) for d in value.split("; "))
    assert directives == {
        "default-src": "'self'",
        "script-src": f"'nonce-{nonce}' 'strict-dynamic'",
        "style-src": f"'self' 'nonce-{nonce}'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
    }


def test_csp_without_a_nonce_allows_only_own_files() -> None:
    value = CspBuilder(HeadersPolicy()).value(None).decode()
    assert "nonce-" not in value
    assert "'strict-dynamic'" not in value
    assert "script-src 'self';" in value
    assert "style-src 'self';" in value
    assert as_dict(plan(nonce=None))[b"content-security-policy"] == value.encode()


def test_csp_nonce_changes_per_response_only_in_the_nonce() -> None:
    builder = CspBuilder(HeadersPolicy())
    a, b = new_nonce(), new_nonce()
    assert builder.value(a).replace(a.encode(), b"N") == builder.value(b).replace(b.encode(), b"N")


@pytest.mark.parametrize("nonce", ["", "abc; script-src *", "a b", "abc\r\nx", "é"])
def test_csp_refuses_a_nonce_that_could_inject(nonce: str) -> None:
    with pytest.raises(ValueError):
        CspBuilder(HeadersPolicy()).value(nonce)


def test_csp_extra_sources_merged() -> None:
    policy = HeadersPolicy(
        csp_extra={
            "img-src": ("https://cdn.example", "data:"),
            "script-src": ("https://js.example", "'strict-dynamic'"),
            "default-src": ("'self'",),
            "frame-ancestors": ("https://partner.example",),
            "object-src": ("'none'",),
        }
    )
    value = CspBuilder(policy).value(NONCE).decode()
    directives = dict(d.split(" ", 1) for d in value.split("; "))
    assert directives["img-src"] == "https://cdn.example data:"
    assert directives["script-src"] == f"'nonce-{NONCE}' 'strict-dynamic' https://js.example"
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "https://partner.example"  # 'none' replaced
    assert directives["object-src"] == "'none'"
    static = dict(d.split(" ", 1) for d in CspBuilder(policy).value(None).decode().split("; "))
    assert static["script-src"] == "'self' https://js.example"


@pytest.mark.parametrize(
    "extra",
    [
        {"img-src": ("a; script-src *",)},
        {"img-src": ("a b",)},
        {"img-src": ("a,b",)},
        {"img-src": ("",)},
        {"img-src": ("https://cdn\r\n.example",)},
        {"img-src": ("https://cdné.example",)},
        {"img-src": "https://cdn.example"},  # a string, not a tuple of sources
        {"Img-Src": ("https://cdn.example",)},
        {"img-src; script-src": ("x",)},
        {"": ("x",)},
    ],
)
def test_csp_extra_refuses_injection(extra: dict[str, tuple[str, ...]]) -> None:
    with pytest.raises(ValueError, match="csp_extra"):
        CspBuilder(HeadersPolicy(csp_extra=extra))


def test_report_only_header_name() -> None:
    headers = as_dict(plan(HeadersPolicy(csp_report_only=True)))
    assert headers[b"content-security-policy-report-only"] == DEFAULT_CSP
    assert b"content-security-policy" not in headers


def test_report_only_does_not_yield_to_an_enforced_app_policy() -> None:
    p = plan(HeadersPolicy(csp_report_only=True), existing={b"content-security-policy"})
    assert b"content-security-policy-report-only" in as_dict(p)


def test_report_uri_and_report_to() -> None:
    headers = as_dict(plan(HeadersPolicy(csp_report_uri="/csp-reports")))
    csp = headers[b"content-security-policy"]
    assert csp.endswith(b"; report-uri /csp-reports; report-to sessionwarden-csp")
    assert headers[b"reporting-endpoints"] == b'sessionwarden-csp="/csp-reports"'


@pytest.mark.parametrize("uri", ['/r"x', "/r x", "/r;x", "/r\nx"])
def test_report_uri_injection_refused(uri: str) -> None:
    with pytest.raises(ValueError, match="csp_report_uri"):
        SecurityHeaders(HeadersPolicy(csp_report_uri=uri))


def test_csp_off() -> None:
    headers = as_dict(plan(HeadersPolicy(csp=False, csp_report_uri="/r")))
    assert not any(name.startswith(b"content-security-policy") for name in headers)
    assert b"reporting-endpoints" not in headers


# --- nonces ---------------------------------------------------------------------------------------


def test_nonce_is_144_bits_of_base64_in_24_characters() -> None:
    # At least the 128 bits the CSP spec asks for; 18 bytes need no base64 padding.
    for nonce in [new_nonce() for _ in range(3 * headers_module._NONCE_BATCH)]:
        assert len(nonce) == 24
        assert len(base64.b64decode(nonce, validate=True)) == 18


def test_nonce_fresh_each_call() -> None:
    assert len({new_nonce() for _ in range(1000)}) == 1000


def test_nonces_drawn_by_many_threads_are_all_different() -> None:
    per_thread = 3 * headers_module._NONCE_BATCH  # every thread refills the batch several times
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(out: list[str]) -> None:
        out.extend(new_nonce() for _ in range(per_thread))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [n for out in drawn for n in out]
    assert len(every) == len(set(every)) == 8 * per_thread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_never_hands_out_its_parents_nonces() -> None:
    new_nonce()  # the batch is drawn: the rest is waiting in this process
    while not headers_module._unused_nonces:  # that call took the last of an earlier batch
        new_nonce()
    waiting = set(headers_module._unused_nonces)
    assert waiting
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it hands out, then leave without running pytest's exit
        os.close(read)
        os.write(write, " ".join(new_nonce() for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 5
    assert child.isdisjoint(waiting)


def test_every_nonce_is_accepted_by_the_builder() -> None:
    builder = CspBuilder(HeadersPolicy())
    for _ in range(200):
        nonce = new_nonce()
        assert f"'nonce-{nonce}'".encode() in builder.value(nonce)
        assert builder.value(str(nonce)) == builder.value(nonce)  # plain text is checked, passes
