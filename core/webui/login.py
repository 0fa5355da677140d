"""Login and logout views of an officer-facing UI (password + TOTP, core.accounts.officers)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import Blueprint, Response, render_template, request, url_for
from flask.typing import ResponseReturnValue

from core import audit
from core.accounts.officers import LoginRefusedError, authenticate
from core.context import context
from core.webui.core import (
    PageError,
    clear_cookie,
    current_session,
    login_cookie,
    now,
    redirect_to,
    session_cookie,
    set_cookie,
    settings,
    ui_blueprint,
)
from core.webui.sessions import close_session, open_session

LOGIN_FORM_SECONDS = 15 * 60  # the login form's anti-forgery cookie lives this long


def _safe_next(target: str | None) -> str:
    """Only a path of this UI: never another host (open redirect) or another service."""
    ui = settings()
    if (
        target
        and target.startswith(ui.prefix + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(32 < ord(c) < 127 for c in target)
    ):
        return target
    return url_for(ui.home_endpoint)


def _login_page(error: str = "", status: int = 200, name: str = "") -> Response:
    form_token = secrets.token_urlsafe(24)
    body = render_template(
        "webui/login.html",
        error=error,
        form_token=form_token,
        name=name,
        next=request.values.get("next", ""),
    )
    response = Response(body, status=status, mimetype="text/html")
    set_cookie(response, login_cookie(), form_token, LOGIN_FORM_SECONDS)
    return response


def login_blueprint() -> Blueprint:
    bp = ui_blueprint("webui", __name__, template_folder="templates", static_folder="static")

    @bp.get("/login")
    def login() -> ResponseReturnValue:
        if current_session() is not None:
            return redirect_to(_safe_next(request.args.get("next")))
        return _login_page()

    @bp.post("/login")
    def login_post() -> ResponseReturnValue:
        ctx = context()
        reg = ctx.config.registration
        name = request.form.get("name", "")
        ui = settings()
        try:
            account = authenticate(
                ctx.db,
                ctx.sealer,
                name,
                request.form.get("password", ""),
                request.form.get("code", ""),
                now=now(),
                max_failed=reg.max_failed_logins,
                lockout_minutes=reg.lockout_minutes,
                client_address=request.remote_addr or "",
            )
        except LoginRefusedError as exc:
            return _login_page(exc.detail, 401, name[:64])
        if account.role not in ui.roles:
            with ctx.db.write() as session:
                audit.append(
                    session,
                    actor=account.actor,
                    action="officer.login_failed",
                    at=now(),
                    details={"reason": f"role {account.role} may not use {ui.prefix}"},
                )
            raise PageError(403, f"the {account.role} role has no access to {ui.title}")
        active = open_session(
            ctx.db, account, now=now(), absolute=timedelta(hours=reg.session_max_hours)
        )
        response = redirect_to(_safe_next(request.form.get("next")))
        # No max_age: a browser-session cookie; the server enforces idle and absolute expiry.
        set_cookie(response, session_cookie(), active.token, None)
        clear_cookie(response, login_cookie())
        return response

    @bp.post("/logout")
    def logout() -> ResponseReturnValue:
        active = current_session()
        if active is not None:
            close_session(context().db, active, now=now())
        response = redirect_to(url_for("webui.login"))
        clear_cookie(response, session_cookie())
        return response

    return bp
