"""DBSC on the wire: the Structured Field (RFC 9651) header values written and read.

Written: ``Secure-Session-Registration`` (a list holding one inner list of algorithm tokens with
``path`` and ``challenge`` parameters) and ``Secure-Session-Challenge`` (an sf-string with a
mandatory ``id`` parameter). Read: ``Secure-Session-Response`` and ``Sec-Secure-Session-Id`` (an
sf-string each; Chromium 156 sends them unquoted, so a bare value of the expected alphabet is
accepted too) and ``Secure-Session-Skipped`` (a list of tokens with a ``session_identifier``).

Every reader returns ``None`` or an empty list for anything it does not understand; none raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_HEADER = 8192
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")
_OTHER = re.compile(r"-?[0-9][0-9.]*|\?[01]")  # integers, decimals, booleans (values unused)
_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_BARE = re.compile(r"[A-Za-z0-9._~+/=-]+")  # what a JWT or an id looks like unquoted


def sf_string(value: str) -> str:
    """``value`` as an RFC 9651 sf-string (printable ASCII only; anything else is a bug)."""
    if any(not (0x20 <= ord(c) <= 0x7E) for c in value):
        raise ValueError("an sf-string holds printable ASCII only")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def registration_header(algorithms: tuple[str, ...], path: str, challenge: str) -> str:
    """``Secure-Session-Registration: (ES256 RS256);path="...";challenge="..."``."""
    inner = " ".join(algorithms)
    return f"({inner});path={sf_string(path)};challenge={sf_string(challenge)}"


def challenge_header(challenge: str, session_identifier: str) -> str:
    """``Secure-Session-Challenge: "<challenge>";id="<session identifier>"``."""
    return f"{sf_string(challenge)};id={sf_string(session_identifier)}"


@dataclass(frozen=True, slots=True)
class _Item:
    value: str
    is_string: bool
    params: dict[str, str]


class _Parser:
    """Just enough of RFC 9651 lists for the request headers DBSC defines: items that are
    tokens or sf-strings, with parameters whose values are tokens or sf-strings."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip(self, chars: str) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in chars:
            self.pos += 1

    def _string(self) -> str | None:
        out: list[str] = []
        self.pos += 1  # opening quote
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\":
                if self.pos >= len(self.text) or self.text[self.pos] not in '"\\':
                    return None
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                return "".join(out)
            elif not (0x20 <= ord(c) <= 0x7E):
                return None
            else:
                out.append(c)
        return None  # unterminated

    def bare(self) -> tuple[str, bool] | None:
        """A token or an sf-string (or a number or boolean, as text), as (value, is_string)."""
        if self.pos < len(self.text) and self.text[self.pos] == '"':
            value = self._string()
            return None if value is None else (value, True)
        match = _TOKEN.match(self.text, self.pos) or _OTHER.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group(), False

    def params(self) -> dict[str, str] | None:
        params: dict[str, str] = {}
        while self.pos < len(self.text) and self.text[self.pos] == ";":
            self.pos += 1
            self._skip(" ")
            key = _KEY.match(self.text, self.pos)
            if key is None:
                return None
            self.pos = key.end()
            value = "?1"
            if self.pos < len(self.text) and self.text[self.pos] == "=":
                self.pos += 1
                got = self.bare()
                if got is None:
                    return None
                value = got[0]
            params[key.group()] = value
        return params

    def items(self) -> list[_Item] | None:
        found: list[_Item] = []
        self._skip(" ")
        while self.pos < len(self.text):
            got = self.bare()
            params = None if got is None else self.params()
            if got is None or params is None:
                return None
            found.append(_Item(got[0], got[1], params))
            self._skip(" \t")
            if self.pos >= len(self.text):
                break
            if self.text[self.pos] != ",":
                return None
            self.pos += 1
            self._skip(" \t")
            if self.pos >= len(self.text):
                return None  # trailing comma
        return found


def parse_string_item(value: str | None) -> str | None:
    """The value of an sf-string header (parameters ignored); a bare value is accepted when it
    looks like a JWT or an identifier. ``None`` for anything else."""
    if value is None:
        return None
    value = value.strip(" \t")
    if not value or len(value) > MAX_HEADER:
        return None
    if value[0] != '"':
        return value if _BARE.fullmatch(value) else None
    parser = _Parser(value)
    got = parser.bare()
    if got is None or parser.params() is None or parser.pos != len(value):
        return None
    return got[0] or None


@dataclass(frozen=True, slots=True)
class Skipped:
    """One entry of ``Secure-Session-Skipped``: why the browser did not refresh a session."""

    reason: str  # "unreachable" | "server_error" | "quota_exceeded" | something newer
    session_identifier: str


def parse_skipped(value: str | None) -> list[Skipped]:
    """The entries of a ``Secure-Session-Skipped`` header; malformed headers yield ``[]``."""
    if not value or len(value) > MAX_HEADER:
        return []
    items = _Parser(value.strip(" \t")).items()
    if items is None:
        return []
    return [
        Skipped(item.value[:64], item.params.get("session_identifier", "")[:128])
        for item in items
        if not item.is_string
    ]
