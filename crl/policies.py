"""The published policy documents: ``/policies/`` (index), ``/policies/<name>`` and
``/policies/<name>.html`` (readable HTML), ``/policies/<name>.md`` (the Markdown).

Certificates carry ``<documents base>/policies/cps-<issuer>`` (CPS URI) and
``<documents base>/policies/pds-<lang>`` (QcPDS) without an extension (ca/tbs.py), so the
bare name answers the HTML. The documents are rendered once, when the application is
built, with this deployment's configuration (policies/facts.py): the figures a reader
sees are those this service enforces. A name is looked up in that fixed set, never used as
a path, so no request reaches the file system.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, request
from markdown_it import MarkdownIt

from core.config import SceauConfig
from core.errors import ErrorKind, SceauError
from core.http.service import provide, provided
from crl.policy_facts import BEGIN, END, Facts, document_paths, render, render_block
from pki.profiles import ProfileSet

bp = Blueprint("policies", __name__)
MAX_AGE = 3600  # documents change only with a deployment
_NAME = re.compile(r"[a-z0-9-]{1,64}")
_VERSION = re.compile(r"\*\*Version:\*\*\s*([^\s·]+)")
_DATE = re.compile(r"\*\*Date:\*\*\s*([0-9-]+)")
_OID = re.compile(r"^\| Document OID \| `([^`]+)` \|$", re.M)

STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #bbb; padding: 0.3rem 0.5rem; vertical-align: top;
         text-align: left; }
th { background: #f0f0f0; } code { font-size: 0.9em; overflow-wrap: anywhere; }
nav { font-size: 0.9rem; margin-bottom: 1rem; }
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# No script, no external resource; the inline style is allowed by its hash only.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True)
class Document:
    name: str
    title: str
    version: str
    date: str
    oid: str
    markdown: bytes
    html: bytes


@dataclass(frozen=True)
class Published:
    documents: dict[str, Document]
    index: bytes


def _markdown() -> MarkdownIt:
    # CommonMark with tables; raw HTML in a document is escaped, never passed through.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def _without_markers(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not (BEGIN.match(line) or line == END))


def _page(title: str, body: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<nav><a href="./">All policy documents</a></nav>{body}</body></html>\n'
    ).encode()


def _document(name: str, source: str, facts: Facts, md: MarkdownIt) -> Document:
    text = render(source, facts)
    title_line = next((line for line in text.split("\n") if line.startswith("# ")), name)
    title = title_line.removeprefix("# ").strip()
    version = _VERSION.search(text)
    date = _DATE.search(text)
    oid = _OID.search(text)
    return Document(
        name=name,
        title=title,
        version=version.group(1) if version else "",
        date=date.group(1) if date else "",
        oid=oid.group(1) if oid else "",
        markdown=text.encode(),
        html=_page(title, md.render(_without_markers(text))),
    )


def _index(documents: dict[str, Document], facts: Facts, md: MarkdownIt) -> bytes:
    rows = "".join(
        f'<tr><td><a href="{d.name}">{html.escape(d.title)}</a></td>'
        f"<td><code>{html.escape(d.oid)}</code></td><td>{html.escape(d.version)}</td>"
        f'<td>{html.escape(d.date)}</td><td><a href="{d.name}.md">Markdown</a></td></tr>'
        for d in documents.values()
    )
    # What a reader comes for first: per profile, the identity proofing it needs and how
    # long the evidence is kept, as this service enforces them.
    summary = md.render(
        "## Identity proofing per certificate profile\n\n"
        + render_block(facts, "identity all")
        + "\n\n## How long evidence is kept\n\n"
        + render_block(facts, "retention all")
    )
    body = (
        "<h1>Sceau policy documents</h1>"
        "<p>Certificate policies and practice statements (RFC 3647 outline), the "
        "time-stamping policy and the PKI disclosure statements. Figures in their tables "
        "are rendered from the configuration this service runs with.</p>"
        "<table><thead><tr><th>document</th><th>OID</th><th>version</th><th>date</th>"
        f"<th>original</th></tr></thead><tbody>{rows}</tbody></table>{summary}"
    )
    return _page("Sceau policy documents", body)


def publish(config: SceauConfig, profiles: ProfileSet) -> Published:
    facts = Facts.of(config, profiles)
    md = _markdown()
    documents = {
        name: _document(name, path.read_text(encoding="utf-8"), facts, md)
        for name, path in document_paths().items()
    }
    return Published(documents, _index(documents, facts, md))


def install(app: Flask, config: SceauConfig, profiles: ProfileSet) -> None:
    provide(app, publish(config, profiles))
    app.register_blueprint(bp)


def _serve(body: bytes, mimetype: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers.update(SECURITY_HEADERS)
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    response.set_etag(hashlib.sha256(body).hexdigest())
    response.make_conditional(request)  # 304 on a matching If-None-Match
    return response


def _find(name: str) -> Document:
    published = provided(Published)
    document = published.documents.get(name) if _NAME.fullmatch(name) else None
    if document is None:
        shown = name if _NAME.fullmatch(name) else "that name"
        raise SceauError(ErrorKind.NOT_FOUND, f"no policy document {shown!r} at /policies/")
    return document


@bp.get("/policies/")
def index() -> Response:
    published = provided(Published)
    return _serve(published.index, "text/html")


@bp.get("/policies/<path:name>")
def document(name: str) -> Response:
    # One route for every spelling, so that anything else (a dot-dot, a slash, another
    # extension) gets the same 404 problem.
    base, dot, extension = name.rpartition(".")
    if not dot:
        return _serve(_find(name).html, "text/html")
    if extension == "html":
        return _serve(_find(base).html, "text/html")
    if extension == "md":
        return _serve(_find(base).markdown, "text/markdown")
    raise SceauError(ErrorKind.NOT_FOUND, "policy documents are served as .html or .md")
