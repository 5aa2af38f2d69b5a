"""Output encoding and HTML sanitizing: the two ways user input may reach a page.

Which one to use:

* :func:`escape` for almost everything: a user's name, a comment shown as text, a value in a form
  field. The input is displayed exactly as typed and can never become markup.
* :func:`sanitize_html` only when users are meant to format text (a comment box with bold and
  links). The input becomes markup, but only from a small allow-list.

Neither makes a value safe inside ``<script>``, ``<style>``, an event-handler attribute, a
``style`` attribute or as a URL (``href="{{ value }}"`` still admits ``javascript:``): do not put
user input there. These live in the ``html`` extra (``pip install 'sessionwarden[html]'``).
"""

from __future__ import annotations

try:
    import markupsafe
    import nh3
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "sessionwarden.html needs markupsafe and nh3; install them with "
        "pip install 'sessionwarden[html]'"
    ) from exc

__all__ = ["ALLOWED_TAGS", "escape", "sanitize_html"]

#: Formatting a comment needs, nothing that loads, embeds, styles or positions anything.
ALLOWED_TAGS = frozenset(
    {"p", "br", "b", "i", "em", "strong", "a", "ul", "ol", "li", "code", "pre", "blockquote"}
)
_ALLOWED_SCHEMES = frozenset({"http", "https", "mailto"})
# Only a link's target survives; ``rel`` is forced below, so it must not be allowed as input.
# The empty ``"*"`` entry matters: without it ammonia keeps ``title`` and ``lang`` everywhere.
_ALLOWED_ATTRIBUTES: dict[str, set[str]] = {"a": {"href"}, "*": set()}

_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    # These lose their content too: the text of a script or style is code, not prose.
    clean_content_tags={"script", "style"},
    attributes=_ALLOWED_ATTRIBUTES,
    url_schemes=set(_ALLOWED_SCHEMES),
    # Relative links are refused too: in user content they are how a link to ``//evil.example``
    # or to an action on this site (``/account/delete``) hides behind harmless text.
    url_relative="deny",
    # ``nofollow``: links in user content earn no search ranking, so spamming them pays nothing.
    link_rel="noopener noreferrer nofollow",
    generic_attribute_prefixes=set(),
    strip_comments=True,
)


def escape(value: object) -> markupsafe.Markup:
    """Encode ``value`` for HTML text and for a *quoted* attribute value.

    ``& < > " '`` become character references, so the value can neither open a tag nor leave a
    quoted attribute. A :class:`markupsafe.Markup` passes through unchanged: it is already markup
    someone vouched for, which is also why user input must never be wrapped in ``Markup`` directly.
    """
    return markupsafe.escape(value)


def sanitize_html(html: str) -> str:
    """Reduce untrusted HTML to the allow-listed formatting tags.

    Unknown tags are dropped and their text kept (``<script>`` and ``<style>`` lose their content);
    every attribute except ``href`` on ``<a>`` is removed; ``href`` keeps only ``http``, ``https``
    and ``mailto`` URLs; each link gets ``rel="noopener noreferrer nofollow"``. The result is parsed
    and re-serialized by a real HTML5 parser (ammonia), so malformed and nested tricks come out as
    well-formed markup or text, never as something a browser would read differently.
    """
    return _CLEANER.clean(html)
