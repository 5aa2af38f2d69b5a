"""How long a session lives: the one rule that picks a session's timeouts and cookie lifetime.

Every session lives by the policy's ``idle_timeout`` and ``absolute_timeout``, except one whose
user asked at sign-in to be remembered (``Session.login(user, remember=True)``) while the policy
has a :class:`~sessionwarden.policy.RememberPolicy`: it lives by the remember lifetime, and its
cookie outlives the browser. That choice is the core-owned flag :data:`REMEMBER_FLAG` of the
record, set only by a sign-in and never by the application's data. A record flagged remembered
under a policy that no longer has a remember lifetime falls back to the normal one (the shorter):
turning the feature off shortens every remembered session at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..policy import Policy
from ..records import JSON, LINEAGE_FLAG

#: The record flag of a remembered session (``True``); absent otherwise.
REMEMBER_FLAG = "remember"


def flagged_remembered(flags: dict[str, JSON]) -> bool:
    """Whether a record's flags say its user asked to be remembered."""
    return flags.get(REMEMBER_FLAG) is True


@dataclass(frozen=True, slots=True)
class Lifetime:
    """The timeouts one session lives by, and whether its cookie outlives the browser."""

    #: Sliding inactivity limit, in seconds.
    idle: float
    #: Hard limit from creation (for a signed-in session: from its sign-in), in seconds.
    absolute: float
    #: The cookie gets ``Max-Age`` (what remains of ``absolute``), so it survives a restart of
    #: the browser; otherwise it is a browser-session cookie. The server enforces the timeouts
    #: either way.
    persistent: bool
    #: The remember lifetime (:data:`REMEMBER_FLAG`).
    remembered: bool = False

    def expires_at(self, created_at: float, last_seen: float) -> float:
        """The earlier of the idle and the absolute deadline."""
        return min(last_seen + self.idle, created_at + self.absolute)

    def sign_in_flags(self, lineage: str) -> dict[str, JSON]:
        """The flags a session starts with at its sign-in (or creation): its lineage, and
        :data:`REMEMBER_FLAG` when it lives by the remember lifetime."""
        if self.remembered:
            return {LINEAGE_FLAG: lineage, REMEMBER_FLAG: True}
        return {LINEAGE_FLAG: lineage}


@dataclass(frozen=True, slots=True)
class Lifetimes:
    """The normal lifetime and, when the policy has one, the remember lifetime."""

    normal: Lifetime
    remember: Lifetime | None = None

    @classmethod
    def of(cls, policy: Policy) -> Lifetimes:
        normal = Lifetime(policy.idle_timeout, policy.absolute_timeout, policy.cookie.persistent)
        rp = policy.remember
        if rp is None:
            return cls(normal)
        return cls(normal, Lifetime(rp.idle_timeout, rp.absolute_timeout, True, remembered=True))

    def pick(self, remembered: bool) -> Lifetime:
        """The lifetime of a session that is (or is not) remembered."""
        if remembered and self.remember is not None:
            return self.remember
        return self.normal

    def of_flags(self, flags: dict[str, JSON]) -> Lifetime:
        """The lifetime of the record with these flags (read on every request: no calls)."""
        remember = self.remember
        if remember is not None and flags.get(REMEMBER_FLAG) is True:
            return remember
        return self.normal


#: The lifetimes of the default policy (a :class:`~sessionwarden.core.session.Session` made
#: outside an engine).
DEFAULT_LIFETIMES = Lifetimes(Lifetime(1800.0, 43_200.0, False))
