"""Output escaping and the HTML allow-list."""

from __future__ import annotations

import html.parser

import markupsafe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionwarden.html import ALLOWED_TAGS, escape, sanitize_html

# --- escape ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('" onmouseover="alert(1)', "&#34; onmouseover=&#34;alert(1)"),
        ("' autofocus onfocus='x", "&#39; autofocus onfocus=&#39;x"),
        ("Tom & Jerry", "Tom &amp; Jerry"),
        ("&lt;already&gt;", "&amp;lt;already&amp;gt;"),  # escaped again: text is shown as typed
        (42, "42"),
        (None, "None"),
        ("plain", "plain"),
    ],
)
def test_escape(value: object, expected: str) -> None:
    result = escape(value)
    assert isinstance(result, markupsafe.Markup)
    assert str(result) == expected


def test_escape_leaves_vouched_markup_alone() -> None:
    assert escape(markupsafe.Markup("<b>ok</b>")) == "<b>ok</b>"


def test_escaped_value_stays_inside_a_quoted_attribute() -> None:
    attrs: list[list[tuple[str, str | None]]] = []

    class Collect(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, a: list[tuple[str, str | None]]) -> None:
            attrs.append(a)

    evil = "x\" onclick=\"alert(1)' y='z"
    Collect().feed(f"<input value=\"{escape(evil)}\"><input value='{escape(evil)}'>")
    assert attrs == [[("value", evil)], [("value", evil)]]


# --- sanitize_html: attacks removed ---------------------------------------------------------------

ATTACKS = [
    ("<script>alert(1)</script>", ""),
    ("<p>hi<script>alert(1)</script></p>", "<p>hi</p>"),
    ("<SCRIPT SRC=//evil.example/x.js></SCRIPT>", ""),
    ("<scr<script>ipt>alert(1)</script>", "ipt&gt;alert(1)"),
    ("<style>body{display:none}</style>text", "text"),
    ("<img src=x onerror=alert(1)>", ""),
    ("<b onclick=alert(1)>x</b>", "<b>x</b>"),
    ("<p onmouseover='alert(1)' style='color:red' class=c id=i title=t>x</p>", "<p>x</p>"),
    ('<a href="javascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="JaVaScRiPt:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="java&#x09;script:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href=" javascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="&#106;avascript:alert(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    (
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        '<a rel="noopener noreferrer nofollow">x</a>',
    ),
    ('<a href="vbscript:msgbox(1)">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="//evil.example">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    ('<a href="/account/delete">x</a>', '<a rel="noopener noreferrer nofollow">x</a>'),
    (
        '<a href="https://ok.example" rel="opener" target="_blank">x</a>',
        '<a href="https://ok.example" rel="noopener noreferrer nofollow">x</a>',
    ),
    ('<p title="" onmouseover="alert(1)">x</p>', "<p>x</p>"),
    ('<p title="x"onmouseover="alert(1)">x</p>', "<p>x</p>"),
    ('<b "onmouseover=alert(1)">x</b>', "<b>x</b>"),
    ("<svg><script>alert(1)</script></svg>", ""),
    ("<svg onload=alert(1)>", ""),
    ('<math><mi xlink:href="javascript:alert(1)">x</mi></math>', ""),
    ('<iframe src="https://evil.example"></iframe>', ""),
    ('<form action="https://evil.example"><input name=x></form>', ""),
    ("<object data=x></object><embed src=x>", ""),
    ('<base href="https://evil.example/">', ""),
    ('<meta http-equiv="refresh" content="0;url=https://evil.example">', ""),
    ("<!-- <script>alert(1)</script> -->ok", "ok"),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', '&lt;p title=""&gt;'),
    ("<textarea><script>alert(1)</script></textarea>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
    ("<b><i>unclosed", "<b><i>unclosed</i></b>"),
    ("</p></b>stray closers", "<p></p>stray closers"),  # as an HTML5 parser reads it
    ("<div><p>kept text</p></div>", "<p>kept text</p>"),
]


@pytest.mark.parametrize(("dirty", "clean"), ATTACKS)
def test_attacks_removed(dirty: str, clean: str) -> None:
    assert sanitize_html(dirty) == clean


# --- sanitize_html: allowed markup kept -----------------------------------------------------------

KEPT = [
    "<p>para</p>",
    "line<br>break",
    "<b>b</b><i>i</i><em>em</em><strong>strong</strong>",
    "<ul><li>one</li></ul><ol><li>two</li></ol>",
    "<pre><code>x &lt; y &amp;&amp; z</code></pre>",
    "<blockquote>quoted</blockquote>",
    '<a href="https://example.org/a?b=1&amp;c=2" rel="noopener noreferrer nofollow">link</a>',
    '<a href="http://example.org" rel="noopener noreferrer nofollow">plain http</a>',
    '<a href="mailto:someone@example.org" rel="noopener noreferrer nofollow">mail</a>',
    "plain text with &lt;angle brackets&gt;",
]


@pytest.mark.parametrize("markup", KEPT)
def test_allowed_markup_kept(markup: str) -> None:
    assert sanitize_html(markup) == markup


def test_allow_list_is_exactly_the_documented_one() -> None:
    documented = "p br b i em strong a ul ol li code pre blockquote"
    assert set(documented.split()) == ALLOWED_TAGS


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                "/",
                "script",
                "a",
                "href=",
                '"',
                "'",
                "javascript:",
                "on",
                "error=",
                "img",
                "svg",
                " ",
                "=",
                "<!--",
                "-->",
                "&#",
                "x",
                "p",
                "style",
            ]
        ),
        max_size=40,
    ).map("".join)
    | st.text(max_size=200)
)
def test_sanitized_output_has_no_active_content(dirty: str) -> None:
    clean = sanitize_html(dirty)
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Collect().feed(clean)
    for tag, attrs in found:
        assert tag in ALLOWED_TAGS
        for name, value in attrs:
            assert (tag, name) in (("a", "href"), ("a", "rel"))
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:"))
    assert sanitize_html(clean) == clean  # a fixed point: nothing left to strip
