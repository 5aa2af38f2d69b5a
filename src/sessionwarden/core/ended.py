"""Why the session a request presents has ended, in words an application can show its user.

The reason is derived only from what the store keeps under the presented ID (its tombstone's
reason) or from the record's own deadlines, so only a client presenting the exact ID of an ended
session learns it; an unknown, forged or malformed ID has no reason. A request that finds a
session expired leaves a tombstone of the expiry (``expired.idle``, ``expired.absolute``) for
:func:`expired_tombstone_ttl`, so every request presenting that ID meanwhile (a second tab, a
live connection's handshake) learns the reason too, not only the first.

=====================  ==========================================================================
``session_ended``      the presented session ...
=====================  ==========================================================================
``idle``               went unused for longer than ``Policy.idle_timeout`` (a remembered one:
                       ``RememberPolicy.idle_timeout``)
``absolute``           reached ``Policy.absolute_timeout`` (``RememberPolicy.absolute_timeout``)
                       after sign-in
``signed-out``         was signed out (``session.logout()``)
``revoked-by-user``    was ended by its user from another session ("your devices", "sign out
                       everywhere else")
``revoked-by-admin``   was ended by an operator (``revoke_user``/``revoke_session`` with a ``by``
                       other than ``"user"``, the CLI)
``revoked-suspicious`` was ended by the risk check (a changed browser, a replayed rotated-out ID,
                       several session cookies at once)
``credentials-changed`` was ended because its user's password or credentials changed
``evicted``            was the oldest of its user's sessions over ``max_sessions_per_user``
``replaced``           was given a new ID (at sign-in, a privilege change, or a periodic rotation
                       whose grace has passed): the browser holds the new one
``revoked``            ended for another reason (a tombstone written by an older version)
=====================  ==========================================================================
"""

from __future__ import annotations

from typing import Final

IDLE: Final = "idle"
ABSOLUTE: Final = "absolute"
SIGNED_OUT: Final = "signed-out"
REVOKED_BY_USER: Final = "revoked-by-user"
REVOKED_BY_ADMIN: Final = "revoked-by-admin"
REVOKED_SUSPICIOUS: Final = "revoked-suspicious"
CREDENTIALS_CHANGED: Final = "credentials-changed"
EVICTED: Final = "evicted"
REPLACED: Final = "replaced"
REVOKED: Final = "revoked"

#: Every value ``session_ended`` can take.
ENDED_REASONS: Final = (
    IDLE,
    ABSOLUTE,
    SIGNED_OUT,
    REVOKED_BY_USER,
    REVOKED_BY_ADMIN,
    REVOKED_SUSPICIOUS,
    CREDENTIALS_CHANGED,
    EVICTED,
    REPLACED,
    REVOKED,
)

#: The tombstone reasons of an expired session (the event kinds' names, without ``session.``).
EXPIRED_IDLE: Final = "expired.idle"
EXPIRED_ABSOLUTE: Final = "expired.absolute"

_EXACT = {
    EXPIRED_IDLE: IDLE,
    EXPIRED_ABSOLUTE: ABSOLUTE,
    "logout": SIGNED_OUT,
    "revoked:user": REVOKED_BY_USER,
    "user:revoke-others": REVOKED_BY_USER,
    "policy:credential-change": CREDENTIALS_CHANGED,
    "anomaly": REVOKED_SUSPICIOUS,
    "cookie-tossing": REVOKED_SUSPICIOUS,
    "evicted": EVICTED,
}
_PREFIXES = (
    ("rotated", REPLACED),
    ("revoked:", REVOKED_BY_ADMIN),
    ("policy:", REVOKED_SUSPICIOUS),
)


def ended_reason(tombstone_reason: str) -> str:
    """The ``session_ended`` value of a tombstone's reason (the store's word for it)."""
    found = _EXACT.get(tombstone_reason)
    if found is not None:
        return found
    for prefix, reason in _PREFIXES:
        if tombstone_reason.startswith(prefix):
            return reason
    return REVOKED


def expired_tombstone_ttl(idle_timeout: float, tombstone_ttl: float) -> float:
    """How long the tombstone of an expired session is kept: one idle timeout (never longer than
    the tombstones of revocations). Short, since an expiry is no theft to report: long enough
    for the other tabs and connections of the browser to learn why, and then the ID is unknown
    again."""
    return min(idle_timeout, tombstone_ttl)
