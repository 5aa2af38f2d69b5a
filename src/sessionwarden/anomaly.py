"""Risk assessment of a signed-in session's request, wired to the core's assessor hook.

The fingerprint recorded at login is compared with the request's; the score maps to the policy's
action. A tolerated change (a new network, same browser) refreshes the stored fingerprint and
remembers when, so a session that flaps between networks within the window scores high.
"""

from __future__ import annotations

from . import tokens
from .core import RiskDecision
from .facts import RequestFacts
from .policy import MonitorPolicy, RiskSignal
from .records import JSON, SessionRecord
from .scoring import Risk, action_for, agent_family, assess, fingerprint, should_refresh

_AGENT_CACHE_SIZE = 1024
#: The answer for almost every request (shared: a decision is never changed once made).
_ALLOW = RiskDecision("allow")


class RiskAssessor:
    __slots__ = ("_agents", "_policy")

    def __init__(self, policy: MonitorPolicy) -> None:
        self._policy = policy
        # User-agent strings repeat endlessly; parse each once (bounded).
        self._agents: dict[str, tuple[str, int]] = {}

    def _agent(self, user_agent: str) -> tuple[str, int]:
        found = self._agents.get(user_agent)
        if found is None:
            found = agent_family(user_agent)
            if len(self._agents) >= _AGENT_CACHE_SIZE:
                self._agents.clear()
            self._agents[user_agent] = found
        return found

    def fingerprint(self, facts: RequestFacts) -> dict[str, JSON]:
        """The request's fingerprint, its network sized as the policy says."""
        policy = self._policy
        return fingerprint(facts, policy.ipv4_prefix, policy.ipv6_prefix)

    def __call__(self, record: SessionRecord, facts: RequestFacts, now: float) -> RiskDecision:
        stored = record.fingerprint
        if not stored:
            return _ALLOW
        # Fast path: the same address and browser as at the last refresh (and a language when
        # the stored fingerprint has one: leaving it out counts as a change).
        if stored.get("ip") == facts.client_ip and (
            facts.accept_language or not stored.get("lang")
        ):
            ua = facts.user_agent
            if (stored.get("ua"), stored.get("uav")) == (self._agents.get(ua) or self._agent(ua)):
                return _ALLOW
        policy = self._policy
        current = self.fingerprint(facts)
        net_at = record.flags.get("net_at")
        assessment = assess(
            stored,
            current,
            last_net_change_at=float(net_at) if isinstance(net_at, int | float) else None,
            now=now,
            policy=policy,
        )
        if assessment.risk == Risk.NONE:
            return _ALLOW
        action = action_for(assessment, policy)
        if policy.decide is not None:
            signal = RiskSignal(
                reasons=assessment.reasons,
                risk="high" if assessment.risk == Risk.HIGH else "low",
                action=action,
                user_id=record.user_id,
                ref=tokens.ref_of(record.key),
                client_ip=facts.client_ip,
                user_agent=facts.user_agent[:256],
                previous=dict(stored),
                current=current,
            )
            action = policy.action_for(signal)
        refresh = should_refresh(stored, current, action)
        return RiskDecision(
            action,
            reason=",".join(assessment.reasons),
            detail={"risk": assessment.risk.name.lower(), "from": stored, "to": current},
            refresh_fingerprint=refresh,
        )
