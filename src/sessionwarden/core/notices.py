"""Login notices: what a sign-in tells the application about the user's other sessions.

Pure: :func:`login_notices` reads a fingerprint and the user's other live sessions, as listed
by the store after the sign-in committed, and returns the events to report
(``MonitorPolicy.notify_logins``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..events import EventKind
from ..records import JSON, SessionRecord

#: The kinds :func:`login_notices` may return (the listing is skipped when no sink wants them).
LOGIN_NOTICE_KINDS = (EventKind.CONCURRENT_LOGIN, EventKind.NEW_DEVICE)


def login_notices(
    fingerprint: Mapping[str, JSON] | None, others: Sequence[SessionRecord]
) -> list[tuple[EventKind, dict[str, JSON]]]:
    """The notices of a sign-in with ``fingerprint`` while ``others`` (the user's other live
    sessions) exist: none when there are none; else a concurrent login, and a new device when
    no other session shares its browser family and network. Without a fingerprint (fingerprinting
    off) a device cannot be told apart, so only the concurrent login is reported."""
    if not others:
        return []
    count = len(others)
    notices: list[tuple[EventKind, dict[str, JSON]]] = [
        (EventKind.CONCURRENT_LOGIN, {"others": count})
    ]
    if fingerprint is not None and not any(
        _same_device(fingerprint, o.fingerprint) for o in others
    ):
        notices.append((EventKind.NEW_DEVICE, {"others": count, "browser": fingerprint.get("ua")}))
    return notices


def _same_device(mine: Mapping[str, JSON], theirs: Mapping[str, JSON] | None) -> bool:
    """Same browser family on the same network (the fingerprint's coarse traits, not the
    exact address or version, which change without a new device)."""
    return (
        theirs is not None
        and theirs.get("ua") == mine.get("ua")
        and theirs.get("net") == mine.get("net")
    )
