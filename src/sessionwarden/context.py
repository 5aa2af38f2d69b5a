"""One request's context between its start and its response, as the guard
(:mod:`sessionwarden.guard`) fills it and the adapters and the application read it."""

from __future__ import annotations

from dataclasses import dataclass

from .core import Session
from .dbsc_guard import DbscAnswer
from .facts import RequestFacts
from .refusals import Refusal


@dataclass(slots=True)
class RequestContext:
    """One request between its start and its response: its facts, its session, its CSP nonce,
    and the refusal the guard chose instead of running the application, if any."""

    facts: RequestFacts
    session: Session | None = None
    nonce: str = ""
    refusal: Refusal | None = None
    clear_cookie: bool = False
    #: Several session cookies arrived: the name is cleared on every domain and path.
    tossed: bool = False
    #: The body must be buffered and checked before the app runs: a form's CSRF token, or
    #: (with ``csp_report``) a CSP violation report the guard answers itself.
    needs_form_token: bool = False
    #: A post to the CSP report receiver (``HeadersPolicy.csp_report_path``).
    csp_report: bool = False
    #: The guard answers an endpoint itself: DBSC's, or the CSP report receiver (through the
    #: commit, see :meth:`Guard.answer`).
    dbsc_answer: DbscAnswer | None = None
    #: The DBSC registration offer to add to a login response.
    dbsc_offer: tuple[bytes, bytes] | None = None
    #: Why the session the request presented ended (:mod:`sessionwarden.core.ended`), or
    #: ``None``: no session, a live one, or an ID the store does not know.
    session_ended: str | None = None

    @property
    def answered(self) -> bool:
        """The guard answers instead of the app: a refusal or a DBSC endpoint's answer."""
        return self.refusal is not None or self.dbsc_answer is not None

    def csrf_token(self) -> str:
        """A freshly masked CSRF token for this request's session."""
        if self.session is None:
            raise RuntimeError("no session on a refused request")
        return self.session.csrf_token()
