"""The pure core: a request's session, the rules that load and commit it, and the typed store
operations they yield, with the one driver that runs them.

* :mod:`.session`: :class:`Session`, what the application reads, writes and asks for;
* :mod:`.load`: loading the session a request presents;
* :mod:`.commit`: :func:`plan_commit` (what the commit does, decided without I/O) and carrying
  the plan out, race recovery included;
* :mod:`.engine`: :class:`Engine`, both halves for one policy, and the operator's calls;
* :mod:`.ended`: why a presented session ended (``session_ended``), in one vocabulary;
* :mod:`.ops`: the typed store operations; :mod:`.driver`: :func:`run_sync`, :func:`run_async`.
"""

from .base import Assessor, Fingerprinter, Loaded, Outcome, RiskDecision
from .commit import CommitPlan, plan_commit
from .driver import run_async, run_sync
from .ended import ENDED_REASONS, ended_reason
from .engine import Engine, SessionInfo
from .ops import Op, Steps
from .session import (
    Actions,
    AliasActionRefused,
    HttpsRequired,
    ReauthenticationRequired,
    Session,
    SessionValueError,
    StepUpRequired,
    ValueLimits,
)

__all__ = [
    "ENDED_REASONS",
    "Actions",
    "AliasActionRefused",
    "Assessor",
    "CommitPlan",
    "Engine",
    "Fingerprinter",
    "HttpsRequired",
    "Loaded",
    "Op",
    "Outcome",
    "ReauthenticationRequired",
    "RiskDecision",
    "Session",
    "SessionInfo",
    "SessionValueError",
    "StepUpRequired",
    "Steps",
    "ValueLimits",
    "ended_reason",
    "plan_commit",
    "run_async",
    "run_sync",
]
