"""The auditor UI's pages. Read-only: the only write is the audit event that records an
export (an export takes data out, so it is itself audited)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from audit.checkpoints import Statement, ca_certificates, load_tree
from audit.export import ExportTooLarge, build_export, to_csv, to_jsonl
from audit.queries import EventFilter, issuance_stats, page
from core import audit
from core.accounts.officers import Role
from core.audit import merkle
from core.audit.token_check import TimestampInvalid, verify_token
from core.context import context
from core.store.models import AuditCheckpoint, AuditEvent
from core.webui import PageError, current_officer, role_required, ui_blueprint

bp = ui_blueprint("audit", __name__, template_folder="templates")

READERS = (Role.AUDITOR, Role.ADMIN)
FIELD_MAX = 128
FILTER_FIELDS = ("actor", "action", "profile", "serial", "subject")


def _now() -> datetime:
    return datetime.now(UTC)


def _instant(name: str, raw: str) -> datetime | None:
    """A date or date-time from the filter form (datetime-local sends no zone: UTC)."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise PageError(400, f"{name}: {raw[:40]!r} is not a date (YYYY-MM-DD[THH:MM])") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _filter(values: Any) -> EventFilter:
    texts: dict[str, str | None] = {}
    for name in FILTER_FIELDS:
        value = str(values.get(name, "")).strip()
        if len(value) > FIELD_MAX:
            raise PageError(400, f"{name}: at most {FIELD_MAX} characters")
        if any(ord(c) < 32 for c in value):
            raise PageError(400, f"{name}: control characters are not accepted")
        texts[name] = value or None
    since = _instant("from", str(values.get("since", "")))
    until = _instant("until", str(values.get("until", "")))
    if since and until and since >= until:
        raise PageError(400, "the time range is empty: 'from' must be before 'until'")
    return EventFilter(
        since=since,
        until=until,
        actor=texts["actor"],
        action=texts["action"],
        profile=texts["profile"],
        serial=texts["serial"],
        proof=texts["subject"],
    )


def _form_values(values: Any) -> dict[str, str]:
    return {k: str(values.get(k, ""))[:FIELD_MAX] for k in ("since", "until", *FILTER_FIELDS)}


@bp.get("/")
@role_required(*READERS)
def events() -> ResponseReturnValue:
    flt = _filter(request.args)
    raw_before = request.args.get("before", "")
    if raw_before and not (raw_before.isdigit() and len(raw_before) < 19):
        raise PageError(400, "before: not an event number")
    before = int(raw_before) if raw_before else None
    with context().db.read() as session:
        rows, cursor = page(session, flt, before=before)
    form = _form_values(request.args)
    return render_template("auditui/events.html", rows=rows, cursor=cursor, form=form)


# The Merkle tree of the newest checkpoint asked for, per process: building it reads every
# event hash once, and every event of that checkpoint then gets its proof from it.
_TREE: dict[str, tuple[int, merkle.Tree]] = {}
_TREE_LOCK = threading.Lock()


def _tree(size: int) -> merkle.Tree:
    db = context().db
    with _TREE_LOCK:
        cached = _TREE.get(db.url)
        if cached is not None and cached[0] >= size:
            return cached[1]
        with db.read() as session:
            tree = load_tree(session, size)
        _TREE[db.url] = (size, tree)
        return tree


@bp.get("/events/<raw>")
@role_required(*READERS)
def event(raw: str) -> ResponseReturnValue:
    # A string route, so that a malformed number gets this UI's page, not the API's 404.
    if not (raw.isdigit() and len(raw) < 19):
        raise PageError(404, f"no audit event {raw[:40]!r}")
    seq = int(raw)
    with context().db.read() as session:
        ev = session.get(AuditEvent, seq)
        if ev is None:
            raise PageError(404, f"no audit event {seq}")
        cp = session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.tree_size >= seq)
            .order_by(AuditCheckpoint.tree_size)
            .limit(1)
        ).first()
        roots, intermediates = ca_certificates(session)
    proof: list[str] = []
    included = False
    stamp: dict[str, Any] = {}
    if cp is not None:
        path = _tree(cp.tree_size).inclusion_proof(seq - 1, cp.tree_size)
        proof = [p.hex() for p in path]
        leaf = merkle.leaf_hash(bytes.fromhex(ev.hash))
        included = merkle.root_from_inclusion(leaf, seq - 1, cp.tree_size, path).hex() == (
            cp.root_hash
        )
        try:
            facts = verify_token(
                cp.timestamp_token, cp.signature, roots=roots, intermediates=intermediates
            )
            stamp = {"ok": True, "gen_time": facts.gen_time, "tsu": facts.tsu_subject}
        except TimestampInvalid as exc:
            stamp = {"ok": False, "error": str(exc)}
    chain_ok = audit.chain_hash(ev.prev_hash, ev.seq, ev.at, ev.actor, ev.action, ev.details)
    return render_template(
        "auditui/event.html",
        ev=ev,
        hash_ok=chain_ok == ev.hash,
        cp=cp,
        statement=Statement.decode(cp.statement) if cp is not None else None,
        proof=proof,
        included=included,
        stamp=stamp,
    )


@bp.get("/stats")
@role_required(*READERS)
def stats() -> ResponseReturnValue:
    with context().db.read() as session:
        rows = issuance_stats(session)
    profiles = sorted({p for _m, p, _n in rows})
    months = sorted({m for m, _p, _n in rows}, reverse=True)
    counts = {(m, p): n for m, p, n in rows}
    totals = {p: sum(n for _m, q, n in rows if q == p) for p in profiles}
    return render_template(
        "auditui/stats.html", profiles=profiles, months=months, counts=counts, totals=totals
    )


@bp.post("/export")
@role_required(*READERS)
def export() -> ResponseReturnValue:
    fmt = request.form.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise PageError(400, "format: jsonl or csv")
    flt = _filter(request.form)
    now = _now()
    ctx = context()
    try:
        with ctx.db.read() as session:
            records = build_export(session, flt, now=now)
    except ExportTooLarge as exc:
        raise PageError(413, str(exc)) from None
    events = [r for r in records if r["record"] == "event"]
    with ctx.db.write() as session:
        audit.append(
            session,
            actor=current_officer().actor,
            action="audit.exported",
            at=now,
            details={
                "filter": flt.describe(),
                "format": fmt,
                "events": len(events),
                "first": events[0]["seq"] if events else None,
                "last": events[-1]["seq"] if events else None,
            },
        )
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    if fmt == "csv":
        body, mimetype = to_csv(records), "text/csv"
    else:
        body, mimetype = "".join(to_jsonl(records)), "application/jsonl"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{fmt}"'
    return response
