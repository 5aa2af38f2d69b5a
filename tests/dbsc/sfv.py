"""A strict parser of RFC 9651 Structured Field values (section 4.2: lists, inner lists, items of
every type, parameters), written from the RFC for the DBSC clients. A value it refuses is one a
browser would drop. Dates and display strings (RFC 9651 additions DBSC does not use) are refused.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Token:
    """An sf-token (kept apart from an sf-string, which is a plain ``str``)."""

    value: str


@dataclass
class Item:
    value: Any  # int | float | str | Token | bytes | bool | list[Item] (an inner list)
    params: dict[str, Any] = field(default_factory=dict)


class SfError(ValueError):
    pass


_KEY_START = "abcdefghijklmnopqrstuvwxyz*"
_KEY_CHARS = _KEY_START + "0123456789_-."
_TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TOKEN_CHARS = _TCHAR + ":/"


class SfParser:
    """RFC 9651 section 4.2: ``parse_list`` and ``parse_item`` for whole field values."""

    def __init__(self, text: str) -> None:
        if not text.isascii():
            raise SfError("not ASCII")
        self.s = text.lstrip(" ")
        self.i = 0

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def _eat(self) -> str:
        c = self._peek()
        if not c:
            raise SfError("unexpected end")
        self.i += 1
        return c

    def _done(self) -> None:
        while self._peek() == " ":
            self.i += 1
        if self.i != len(self.s):
            raise SfError(f"trailing characters at {self.i}: {self.s[self.i :]!r}")

    def parse_list(self) -> list[Item]:
        members: list[Item] = []
        while self._peek():
            members.append(self._item_or_inner_list())
            while self._peek() in (" ", "\t") and self._peek():
                self.i += 1
            if not self._peek():
                break
            if self._eat() != ",":
                raise SfError("members must be separated by commas")
            while self._peek() in (" ", "\t") and self._peek():
                self.i += 1
            if not self._peek():
                raise SfError("trailing comma")
        self._done()
        return members

    def parse_item(self) -> Item:
        item = Item(self._bare_item(), {})
        item.params = self._params()
        self._done()
        return item

    def _item_or_inner_list(self) -> Item:
        if self._peek() == "(":
            return self._inner_list()
        value = self._bare_item()
        return Item(value, self._params())

    def _inner_list(self) -> Item:
        self._eat()  # "("
        items: list[Item] = []
        while True:
            while self._peek() == " ":
                self.i += 1
            if self._peek() == ")":
                self._eat()
                return Item(items, self._params())
            value = self._bare_item()
            items.append(Item(value, self._params()))
            if self._peek() not in (" ", ")"):
                raise SfError("inner-list items must be separated by spaces")

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        while self._peek() == ";":
            self._eat()
            while self._peek() == " ":
                self.i += 1
            key = self._key()
            value: Any = True
            if self._peek() == "=":
                self._eat()
                value = self._bare_item()
            params[key] = value
        return params

    def _key(self) -> str:
        if self._peek() not in _KEY_START or not self._peek():
            raise SfError("a key starts with lcalpha or *")
        start = self.i
        while self._peek() and self._peek() in _KEY_CHARS:
            self.i += 1
        return self.s[start : self.i]

    def _bare_item(self) -> Any:
        c = self._peek()
        if c == "-" or (c.isdigit() and c):
            return self._number()
        if c == '"':
            return self._string()
        if c == "*" or (c.isalpha() and c):
            return self._token()
        if c == ":":
            return self._bytes()
        if c == "?":
            self._eat()
            flag = self._eat()
            if flag not in "01":
                raise SfError("a boolean is ?0 or ?1")
            return flag == "1"
        raise SfError(f"no bare item at {self.i}: {self.s[self.i :]!r}")

    def _number(self) -> int | float:
        m = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?").match(self.s, self.i)
        if m is None:
            raise SfError("bad number")
        text = m.group()
        if m.group(1) and len(text.lstrip("-").split(".")[0]) > 12:
            raise SfError("decimal integer part over 12 digits")
        self.i = m.end()
        return float(text) if m.group(1) else int(text)

    def _string(self) -> str:
        self._eat()
        out: list[str] = []
        while True:
            c = self._eat()
            if c == "\\":
                nxt = self._eat()
                if nxt not in '"\\':
                    raise SfError('only \\" and \\\\ may be escaped')
                out.append(nxt)
            elif c == '"':
                return "".join(out)
            elif not (0x20 <= ord(c) <= 0x7E):
                raise SfError("a string holds printable ASCII only")
            else:
                out.append(c)

    def _token(self) -> Token:
        start = self.i
        self.i += 1
        while self._peek() and self._peek() in _TOKEN_CHARS:
            self.i += 1
        return Token(self.s[start : self.i])

    def _bytes(self) -> bytes:
        self._eat()
        end = self.s.find(":", self.i)
        if end < 0:
            raise SfError("unterminated byte sequence")
        raw = self.s[self.i : end]
        self.i = end + 1
        return base64.b64decode(raw, validate=True)


def sf_list(value: str) -> list[Item]:
    return SfParser(value).parse_list()


def sf_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
