"""sessionwarden in Flask: sign in, re-authenticate, a sensitive form, devices, sign out.
Run: flask --app examples/flask_app run  (SESSIONWARDEN_SECRET: 64 hex digits; see docs/flask.md)"""

import hmac
import os
import secrets
from typing import Any

from flask import Flask, abort, redirect, render_template_string, request
from werkzeug.wrappers import Response

from sessionwarden.integrations.flask import SessionWarden, login_required, recent_auth_required
from sessionwarden.integrations.flask import session as sw_session  # flask.session stays Flask's

USERS = {"alice": "wonderland"}  # demo only: keep password hashes (argon2id) in a real app

PAGE = """<!doctype html><title>Flask + sessionwarden</title>
<p>{{ "Signed in as " ~ sw_session.user_id if sw_session.user_id else "Not signed in" }}</p>
{% for action, fields in forms %}<form method="post" action="{{ action }}">
  <input type="hidden" name="csrf_token" value="{{ csrf_token() }}">
  {% for f in fields %}<input name="{{ f }}" placeholder="{{ f }}">{% endfor %}
  <button>{{ action }}</button></form>{% endfor %}
<script nonce="{{ csp_nonce() }}">document.title += " (nonce ok)"</script>"""


def create_app(**options: Any) -> Flask:
    app = Flask(__name__)
    key = os.environ.get("SESSIONWARDEN_SECRET") or secrets.token_hex(32)  # random: demo only
    app.config["SESSIONWARDEN_SECRET_KEYS"] = [key]
    app.config["SESSIONWARDEN_STORE"] = os.environ.get("SESSIONWARDEN_STORE", "memory://")
    warden = SessionWarden(app, login_url="/", reauth_redirect="/", **options)

    def check(user: str, password: str) -> bool:
        return hmac.compare_digest(USERS.get(user, "\0").encode(), password.encode())

    @app.get("/")
    def home() -> str:
        if sw_session.user_id is None:
            return render_template_string(PAGE, forms=[("/login", ["user", "password"])])
        forms = [("/email", ["email"]), ("/reauth", ["password"]), ("/logout", [])]
        return render_template_string(PAGE, forms=forms)

    @app.post("/login")
    def login() -> Response:
        if not check(request.form.get("user", ""), request.form.get("password", "")):
            abort(401)
        sw_session.login(request.form["user"])  # a new session ID: no fixation
        return redirect("/", 303)

    @app.post("/reauth")
    @login_required
    def reauth() -> Response:
        if not check(str(sw_session.user_id), request.form.get("password", "")):
            abort(401)
        sw_session.reauthenticated()  # a fresh auth time and a new session ID
        return redirect("/", 303)

    @app.post("/email")
    @recent_auth_required(300)  # signed in (or re-authenticated) within 5 minutes
    def email() -> dict[str, str]:
        sw_session["email"] = request.form["email"]
        return {"email": request.form["email"]}

    @app.get("/devices")
    @login_required  # anonymous: 303 to login_url (401 for JSON clients)
    def devices() -> list[dict[str, Any]]:
        return [d.to_dict() for d in warden.list_sessions(str(sw_session.user_id), sw_session)]

    @app.post("/logout")
    def logout() -> Response:
        sw_session.logout()  # deleted server-side, cookie expired, Clear-Site-Data sent
        return redirect("/", 303)

    return app


if __name__ == "__main__":
    create_app().run(host="127.0.0.1", port=5000)
