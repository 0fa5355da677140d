"""What every officer-facing page shares: the session cookie, CSRF, security headers, roles,
error pages. The officer UI (/ra/admin) and the auditor UI (/audit) build their blueprints
with :func:`ui_blueprint` and guard views with :func:`role_required`.

Cookies. Over https (``[service] base_url`` starts with https://) the session cookie is
``__Host-sceau-session``: Secure, Path=/, no Domain, so no other host or path can set or
shadow it. Over plain http (development only) a Secure cookie would never come back, so it
is ``sceau-session`` without Secure; both are HttpOnly and SameSite=Strict. Path=/ on purpose:
/ra/admin and /audit are two applications on one host and share the login.

CSRF. Every POST carries ``csrf_token``: for a logged-in page, an HMAC of the session's cookie
value (core.webui.sessions); for the login form, a double-submit value also set in a short-lived
cookie. Missing -> 400, wrong -> 403, checked before any view runs, so nothing changes.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ParamSpec
from urllib.parse import quote

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response as WerkzeugResponse

from core.accounts.officers import OfficerAccount, Role
from core.context import context
from core.errors import ErrorKind, SceauError
from core.http.problems import STATUS, TITLES
from core.webui.sessions import ActiveSession, resume_session

EXTENSION = "sceau-webui"
CSRF_FIELD = "csrf_token"

CSP = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)

P = ParamSpec("P")


@dataclass(frozen=True)
class NavLink:
    endpoint: str
    label: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class WebUi:
    """One officer-facing UI mounted in an application (one per application)."""

    prefix: str  # "/ra/admin", "/audit"
    title: str  # shown in the header and the <title>
    home_endpoint: str  # where a login leads, e.g. "ra_admin.queue"
    nav: tuple[NavLink, ...] = field(default=())
    roles: frozenset[Role] = frozenset(Role)  # who may log in here at all


def settings() -> WebUi:
    ui: WebUi = current_app.extensions[EXTENSION]
    return ui


def secure_cookies() -> bool:
    return context().config.service.base_url.startswith("https://")


def cookie_name(base: str) -> str:
    return f"__Host-{base}" if secure_cookies() else base


def session_cookie() -> str:
    return cookie_name("sceau-session")


def login_cookie() -> str:
    return cookie_name("sceau-login")


def set_cookie(response: WerkzeugResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=secure_cookies(),
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: WerkzeugResponse, name: str) -> None:
    response.delete_cookie(
        name, path="/", secure=secure_cookies(), httponly=True, samesite="Strict"
    )


def now() -> datetime:
    return datetime.now(UTC)


def current_session() -> ActiveSession | None:
    active: ActiveSession | None = g.get("webui_session")
    return active


def current_officer() -> OfficerAccount:
    """The logged-in account; only inside a view guarded by :func:`role_required`."""
    active = current_session()
    if active is None:
        raise SceauError(ErrorKind.UNAUTHENTICATED, "log in first")
    return active.account


class PageError(HTTPException):
    """An HTML error page with a specific message (rendered by the UI's error handler)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(description=detail)
        self.code = status


def role_required(
    *roles: Role,
) -> Callable[[Callable[P, ResponseReturnValue]], Callable[P, ResponseReturnValue]]:
    """Guard a view: not logged in -> the login page (GET) or 401; another role -> 403 page."""
    allowed = frozenset(roles)

    def decorate(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            active = current_session()
            if active is None:
                if request.method == "GET":
                    target = request.full_path.rstrip("?")
                    return redirect_to(url_for("webui.login") + "?next=" + quote(target), 302)
                raise PageError(401, "your session has ended: log in again")
            if active.account.role not in allowed:
                raise PageError(
                    403,
                    f"your role ({active.account.role}) may not do this; "
                    f"it needs: {', '.join(sorted(r.value for r in allowed))}",
                )
            return view(*args, **kwargs)

        return guarded

    return decorate


def redirect_to(location: str, status: int = 303) -> WerkzeugResponse:
    # 303: after a POST the browser GETs the next page, so a reload never re-posts.
    response = WerkzeugResponse(status=status)
    response.headers["Location"] = location
    return response


def _load_session() -> None:
    ctx = context()
    token = request.cookies.get(session_cookie(), "")
    g.webui_session = (
        resume_session(
            ctx.db,
            token,
            now=now(),
            idle=timedelta(minutes=ctx.config.registration.session_idle_minutes),
        )
        if token
        else None
    )


def _check_csrf() -> None:
    if request.method != "POST":
        return
    sent = request.form.get(CSRF_FIELD)
    active = current_session()
    if active is not None:
        expected = active.csrf_token
    elif request.endpoint == "webui.login_post":
        expected = request.cookies.get(login_cookie(), "")
    else:
        raise PageError(401, "your session has ended: log in again")
    if not sent:
        raise PageError(400, "the form lacks its anti-forgery token: reload the page")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise PageError(403, "the form's anti-forgery token is wrong or stale: reload the page")


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    # Pages carry personal data: no cache (browser, proxy) keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("Pragma", "no-cache")
    if secure_cookies():
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def error_page(status: int, title: str, detail: str) -> Response:
    body = render_template("webui/error.html", status=status, title=title, detail=detail)
    return Response(body, status=status, mimetype="text/html")


def _render_sceau_error(exc: SceauError) -> Response:
    return error_page(STATUS[exc.kind], TITLES[exc.kind], exc.detail)


def _render_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    title = {
        400: "Bad request",
        401: "Not logged in",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        413: "Too large",
    }.get(status, "Error")
    return error_page(status, title, exc.description or title)


def ui_blueprint(name: str, import_name: str, **kwargs: Any) -> Blueprint:
    """A blueprint whose views get the session, CSRF checks, security headers and HTML
    error pages. Mounted under the UI's prefix by :func:`install_webui`."""
    bp = Blueprint(name, import_name, **kwargs)
    bp.before_request(_load_session)
    bp.before_request(_check_csrf)
    bp.after_request(_security_headers)
    bp.register_error_handler(SceauError, _render_sceau_error)
    bp.register_error_handler(HTTPException, _render_http_error)
    return bp


def template_context() -> dict[str, Any]:
    ui = current_app.extensions.get(EXTENSION)
    if ui is None:
        return {}
    active = current_session()
    nav = [link for link in ui.nav if active is not None and active.account.role in link.roles]
    return {
        "ui": ui,
        "officer": active.account if active else None,
        "csrf_token": active.csrf_token if active else "",
        "nav": nav,
        "Role": Role,
    }
