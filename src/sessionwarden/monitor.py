"""Watching sessions: the names of :mod:`~sessionwarden.scoring`, :mod:`~sessionwarden.sinks` and
:mod:`~sessionwarden.throttle` in one place.

* :mod:`sessionwarden.scoring`: fingerprints and risk scoring (pure functions);
* :mod:`sessionwarden.sinks`: where events go (JSON log lines, Prometheus, callbacks, fan-out);
* :mod:`sessionwarden.throttle`: the outage gate and the unknown-ID throttle (shared state).

Importing from here keeps working; new code may import from the module that defines a name.
"""

from __future__ import annotations

from .scoring import (
    REPLAY_ROTATED_RISK,
    Assessment,
    Risk,
    action_for,
    agent_family,
    agent_label,
    assess,
    fingerprint,
    is_vaguer,
    network_of,
    should_refresh,
)
from .sinks import (
    EVENT_RECORD_ATTR,
    LOG_SCHEMA_KEYS,
    CallbackSink,
    FanOut,
    JsonFormatter,
    JsonLogSink,
    NullSink,
    PrometheusSink,
    log_level_for,
)
from .throttle import THROTTLE_WINDOW, OutageGate, UnknownIdThrottle

__all__ = [
    "EVENT_RECORD_ATTR",
    "LOG_SCHEMA_KEYS",
    "REPLAY_ROTATED_RISK",
    "THROTTLE_WINDOW",
    "Assessment",
    "CallbackSink",
    "FanOut",
    "JsonFormatter",
    "JsonLogSink",
    "NullSink",
    "OutageGate",
    "PrometheusSink",
    "Risk",
    "UnknownIdThrottle",
    "action_for",
    "agent_family",
    "agent_label",
    "assess",
    "fingerprint",
    "is_vaguer",
    "log_level_for",
    "network_of",
    "should_refresh",
]
