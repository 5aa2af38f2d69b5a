"""What a session record keeps about its DBSC binding: :class:`DbscState`, as plain JSON.

The session record keeps it in a field of its own, ``SessionRecord.dbsc`` (:func:`state_in`,
:func:`to_doc`), so it replicates through every store like the rest of the record, moves with the
session when its ID rotates, and no concurrent write of other fields (flags, data) can drop it.
:func:`state_of` and :func:`flags_with` read and write the same JSON under a ``flags`` key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .records import JSON

#: The key of the session record's ``flags`` under which the DBSC state is kept.
FLAG = "dbsc"


@dataclass(frozen=True, slots=True)
class DbscState:
    """What the session record keeps about its binding (JSON through :meth:`to_json`).

    Before registration only ``challenges`` is set (the offer made at login); once bound,
    ``session_identifier``, ``alg`` and ``jwk`` are. Challenges and bound cookies are kept as
    keyed hashes only: a copy of the store yields nothing to present.
    """

    session_identifier: str = ""
    alg: str = ""
    jwk: dict[str, str] | None = None
    #: Outstanding challenges: (keyed hash, answerable until), oldest first.
    challenges: tuple[tuple[str, float], ...] = ()
    cookie_hash: str = ""
    cookie_expires_at: float = 0.0
    #: The bound cookie set before the last refresh stays valid until its own Max-Age, so a
    #: request already in flight during a refresh is not refused.
    previous_cookie_hash: str = ""
    previous_cookie_expires_at: float = 0.0
    bound_at: float = 0.0
    refreshed_at: float = 0.0
    window_start: float = 0.0
    window_count: int = 0

    @property
    def bound(self) -> bool:
        return bool(self.session_identifier)

    def to_json(self) -> dict[str, JSON]:
        return {
            "v": 1,
            "sid": self.session_identifier,
            "alg": self.alg,
            "jwk": dict(self.jwk) if self.jwk is not None else None,
            "ch": [[digest, until] for digest, until in self.challenges],
            "ck": self.cookie_hash,
            "ck_exp": self.cookie_expires_at,
            "pck": self.previous_cookie_hash,
            "pck_exp": self.previous_cookie_expires_at,
            "bound_at": self.bound_at,
            "refreshed_at": self.refreshed_at,
            "win": [self.window_start, self.window_count],
        }

    @classmethod
    def from_json(cls, doc: object) -> DbscState:
        """The state stored by :meth:`to_json`. Raises ``ValueError`` for anything else."""
        try:
            return _state_from(doc)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed DBSC state: {exc}") from None


def _state_from(doc: Any) -> DbscState:
    if not isinstance(doc, dict) or doc.get("v") != 1:
        raise ValueError("unknown version")
    jwk = doc["jwk"]
    if jwk is not None and not (
        isinstance(jwk, dict) and all(isinstance(v, str) for v in jwk.values())
    ):
        raise ValueError("jwk")
    start, count = doc["win"]
    return DbscState(
        session_identifier=str(doc["sid"]),
        alg=str(doc["alg"]),
        jwk=None if jwk is None else {str(k): str(v) for k, v in jwk.items()},
        challenges=tuple((str(d), float(u)) for d, u in doc["ch"]),
        cookie_hash=str(doc["ck"]),
        cookie_expires_at=float(doc["ck_exp"]),
        previous_cookie_hash=str(doc["pck"]),
        previous_cookie_expires_at=float(doc["pck_exp"]),
        bound_at=float(doc["bound_at"]),
        refreshed_at=float(doc["refreshed_at"]),
        window_start=float(start),
        window_count=int(count),
    )


#: What a stored state that cannot be read becomes: bound, with no key and no cookie, so every
#: check fails closed (the request is served as anonymous; the next login starts afresh).
CORRUPT = DbscState(session_identifier="-", alg="-", jwk={})


def state_of(flags: Mapping[str, JSON]) -> DbscState | None:
    """The DBSC state in a record's ``flags``; ``None`` when the session has none."""
    doc = flags.get(FLAG)
    if doc is None:
        return None
    try:
        return DbscState.from_json(doc)
    except ValueError:
        return CORRUPT


def flags_with(flags: Mapping[str, JSON], state: DbscState | None) -> dict[str, JSON]:
    """A copy of ``flags`` holding ``state`` (or none, for ``None``): the record update."""
    out = dict(flags)
    if state is None:
        out.pop(FLAG, None)
    else:
        out[FLAG] = state.to_json()
    return out


def state_in(doc: JSON) -> DbscState | None:
    """The DBSC state of a record's ``dbsc`` field; ``None`` when it has none, :data:`CORRUPT`
    when it cannot be read (every check then fails closed)."""
    return None if doc is None else state_of({FLAG: doc})


def to_doc(state: DbscState | None) -> dict[str, JSON] | None:
    """What a record's ``dbsc`` field holds for ``state``."""
    return None if state is None else state.to_json()


def is_bound(doc: JSON) -> bool:
    """Whether a record's ``dbsc`` field holds a binding (a registered key)."""
    return isinstance(doc, dict) and bool(doc.get("sid"))
