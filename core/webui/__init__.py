"""Officer-facing web UIs (/ra/admin, /audit): sessions, login, CSRF, roles, base templates.

Use: build view blueprints with :func:`ui_blueprint`, guard views with :func:`role_required`,
extend ``webui/base.html`` (block ``content``; ``csrf_token`` is in every template's context),
and mount everything with :func:`install_webui`.
"""

from flask import Blueprint, Flask

from core.errors import ErrorKind, SceauError
from core.webui.core import (
    EXTENSION,
    NavLink,
    PageError,
    WebUi,
    current_officer,
    current_session,
    redirect_to,
    role_required,
    template_context,
    ui_blueprint,
)
from core.webui.login import login_blueprint

__all__ = [
    "NavLink",
    "PageError",
    "WebUi",
    "current_officer",
    "current_session",
    "install_webui",
    "redirect_to",
    "role_required",
    "ui_blueprint",
]


def install_webui(app: Flask, ui: WebUi, *blueprints: Blueprint) -> None:
    """Mount the shared login/logout views and ``blueprints`` under ``ui.prefix``."""
    if EXTENSION in app.extensions:
        raise SceauError(ErrorKind.CONFIG, "one officer UI per application")
    app.extensions[EXTENSION] = ui
    app.jinja_env.autoescape = True  # every template, whatever its name ends with
    app.context_processor(template_context)
    app.register_blueprint(login_blueprint(), url_prefix=ui.prefix)
    for bp in blueprints:
        app.register_blueprint(bp, url_prefix=ui.prefix)
