"""Why the visitor was signed out, and the demo's own refusal pages, for both demo apps.

The request that presents the ID of a session that has ended learns why
(``session_ended``); it is usually not the sign-in page (``/account`` redirects there), so
:func:`note_ended` keeps the reason in the visitor's new anonymous session and the sign-in page
shows its sentence once (:func:`pop_sentence`). :func:`refusal_renderer` is the
``render_refusal`` hook: the guard's 400, 401, 403, 413, 429 and 503 answers as pages in the
demo's style (an external stylesheet, no inline style or script), and JSON left to the default.
"""

from __future__ import annotations

from collections.abc import Callable

import jinja2

from ..core import Session
from ..core.ended import REPLACED
from ..guard import Refusal, RenderedRefusal, RequestContext

#: The session key the reason waits in until the sign-in page shows it.
_KEY = "ended"

#: One plain sentence per ``session_ended`` reason.
SENTENCES: dict[str, str] = {
    "idle": "You were signed out because this session was not used for a while.",
    "absolute": "You were signed out because this session reached its maximum length.",
    "signed-out": "This session was signed out.",
    "revoked-by-user": "This session was signed out from another of your devices.",
    "revoked-by-admin": "An administrator signed this session out.",
    "revoked-suspicious": (
        "This session was ended because it was used in a way that looked like someone else "
        "had a copy of it. If that was not you, change your password."
    ),
    "credentials-changed": "You were signed out because your password was changed.",
    "evicted": (
        "You were signed out because you signed in on too many devices: the oldest session "
        "ends first."
    ),
    "replaced": "This session was replaced by a newer one.",
    "revoked": "This session was ended.",
}


def note_ended(session: Session | None, reason: object) -> None:
    """Keep ``reason`` for the sign-in page. Not for ``replaced``: the browser already holds
    the ID that replaced the presented one, and a new anonymous session would overwrite it."""
    wanted = isinstance(reason, str) and reason in SENTENCES and reason != REPLACED
    if session is not None and wanted:
        session[_KEY] = str(reason)


def pop_sentence(session: Session) -> str | None:
    """The sentence of the reason :func:`note_ended` kept, once."""
    if _KEY not in session:
        return None
    reason = session.pop(_KEY)
    return SENTENCES.get(reason) if isinstance(reason, str) else None


def refusal_renderer(
    env: jinja2.Environment,
) -> Callable[[Refusal, RequestContext], RenderedRefusal | None]:
    """The demo's ``render_refusal`` hook over its template environment."""
    template = env.get_template("refused.html")

    def render(refusal: Refusal, ctx: RequestContext) -> RenderedRefusal | None:
        if ctx.facts.wants_json:
            return None
        signed_in = ctx.session is not None and ctx.session.user_id is not None
        page = template.render(
            status=refusal.status,
            title=refusal.title,
            message=refusal.message,
            retry_after=refusal.retry_after,
            signed_in=signed_in,
        )
        return RenderedRefusal(page)

    return render
