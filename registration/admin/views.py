"""The officer UI's pages (``/ra/admin``): queue, review, evidence, decisions, search, subject
page, revocation, legal hold, accounts. Views move data; decisions live in
registration.decisions, the CA's revocation in ca.issuance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Response, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from core import audit
from core.accounts.officers import Role
from core.store.models import ApiClient, Certificate, IdentityProof, Officer
from core.webui import PageError, current_officer, redirect_to, role_required, ui_blueprint
from pki.context import context
from pki.profiles import ProofMethod, SubjectKind
from pki.revocation import REVOCATION_REASONS
from pki.revocation import revoke as revoke_certificate
from registration import decisions, retention
from registration.admin import queries
from registration.evidence import list_files, view_evidence
from registration.proofs import append_proof_event, open_proof

bp = ui_blueprint("ra_admin", __name__, template_folder="templates")

READERS = (Role.RA_OFFICER, Role.AUDITOR, Role.ADMIN)
DECIDERS = (Role.RA_OFFICER, Role.ADMIN)
FORM_TEXT_MAX = 500


def _now() -> datetime:
    return datetime.now(UTC)


def _proof(proof_id: str) -> IdentityProof:
    with context().db.read() as session:
        proof = session.get(IdentityProof, proof_id[:64])
    if proof is None:
        raise PageError(404, f"no identity proof {proof_id[:64]!r}")
    return proof


def _form_text(name: str, *, required: bool = True) -> str:
    value = " ".join(request.form.get(name, "").split())
    if required and not value:
        raise PageError(422, f"{name.replace('_', ' ')} is required")
    if len(value) > FORM_TEXT_MAX:
        raise PageError(422, f"{name.replace('_', ' ')}: at most {FORM_TEXT_MAX} characters")
    return value


def _record_view(proof: IdentityProof, page: str) -> None:
    """Opening a sealed record shows personal data: recorded like a view of evidence."""
    with context().db.write() as session:
        append_proof_event(
            session,
            "identity_proof.viewed",
            proof.id,
            actor=current_officer().actor,
            at=_now(),
            page=page,
        )


@bp.get("/")
@role_required(*READERS)
def index() -> ResponseReturnValue:
    return redirect_to(url_for("ra_admin.queue"), 302)


@bp.get("/queue")
@role_required(*READERS)
def queue() -> ResponseReturnValue:
    ctx = context()
    flt = queries.QueueFilter.from_args(request.args)
    now = _now()
    with ctx.db.read() as session:
        items = queries.work_queue(session, ctx.profiles, flt, now=now)
    return render_template(
        "ra_admin/queue.html",
        items=items,
        flt=flt,
        now=now,
        kinds=[k.value for k in SubjectKind],
        methods=[m.value for m in ProofMethod if m is not ProofMethod.DELEGATED],
        ages=list(queries.AGES),
        limit=queries.QUEUE_LIMIT,
    )


@bp.get("/proofs/<proof_id>")
@role_required(*READERS)
def review(proof_id: str) -> ResponseReturnValue:
    ctx = context()
    proof = _proof(proof_id)
    record = open_proof(ctx.sealer, proof) if proof.status != "purged" else None
    if record is not None:
        _record_view(proof, "review")
    files = list_files(ctx.db, proof.id)
    needed = decisions.approvals_needed(ctx.profiles, proof.subject_kind, proof.method)
    with ctx.db.read() as session:
        certificates = queries.certificates_of(session, [proof.id])
    officer = current_officer()
    approvers = {a["by"] for a in proof.approvals}
    return render_template(
        "ra_admin/review.html",
        proof=proof,
        record=record,
        files=files,
        needed=needed,
        approvals=len(approvers),
        certificates=certificates,
        awaiting=decisions.awaits_officer(proof, needed),
        own=proof.submitted_by == officer.actor,
        approved_by_me=officer.actor in approvers,
        may_decide=officer.role in DECIDERS,
        done=request.args.get("done", ""),
        reasons=list(REVOCATION_REASONS),
    )


@bp.get("/proofs/<proof_id>/files/<int:file_id>")
@role_required(*READERS)
def evidence(proof_id: str, file_id: int) -> ResponseReturnValue:
    ctx = context()
    files = {f.id: f for f in list_files(ctx.db, proof_id[:64])}
    if file_id not in files:
        raise PageError(404, f"no evidence file {file_id} on identity proof {proof_id[:64]!r}")
    file, data = view_evidence(
        ctx.db, ctx.sealer, file_id, actor=current_officer().actor, now=_now()
    )
    extension = {"image/jpeg": "jpg", "image/png": "png", "application/pdf": "pdf"}.get(
        file.media_type, "bin"
    )
    response = Response(data, mimetype=file.media_type)
    response.headers["Content-Disposition"] = (
        f'inline; filename="{file.kind}-{file.id}.{extension}"'
    )
    # An uploaded file is data, never a page: no script, no plugin, no framing by others.
    sandbox = "" if file.media_type == "application/pdf" else "; sandbox"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; img-src 'self'; frame-ancestors 'self'{sandbox}"
    )
    return response


@bp.post("/proofs/<proof_id>/approve")
@role_required(*DECIDERS)
def approve(proof_id: str) -> ResponseReturnValue:
    ctx = context()
    proof = decisions.approve_proof(
        ctx.db,
        proof_id[:64],
        current_officer().name,
        now=_now(),
        max_age=timedelta(days=ctx.config.registration.proof_max_age_days),
        profiles=ctx.profiles,
    )
    return redirect_to(url_for("ra_admin.review", proof_id=proof.id, done="approved"))


@bp.post("/proofs/<proof_id>/reject")
@role_required(*DECIDERS)
def reject(proof_id: str) -> ResponseReturnValue:
    reason = _form_text("reason")
    proof = decisions.reject_proof(
        context().db, proof_id[:64], current_officer().name, reason, now=_now()
    )
    return redirect_to(url_for("ra_admin.review", proof_id=proof.id, done="rejected"))


@bp.get("/search")
@role_required(*READERS)
def search() -> ResponseReturnValue:
    ctx = context()
    field = request.args.get("field", "name")
    if field not in {*queries.SEARCH_FIELDS, "serial"}:
        field = "name"
    text = request.args.get("q", "")[:256].strip()
    proofs: list[IdentityProof] = []
    certificates: list[Certificate] = []
    error = ""
    if text:
        with ctx.db.read() as session:
            if field == "serial":
                if queries.normalise_serial(text) is None:
                    error = "a serial number is hexadecimal, at most 40 digits"
                certificates = queries.certificates_by_serial(session, text)
                ids = [c.proof_id for c in certificates if c.proof_id]
                proofs = list(
                    session.scalars(select(IdentityProof).where(IdentityProof.id.in_(ids)))
                )
            else:
                proofs = queries.search_proofs(session, ctx.sealer, field, text)
        with ctx.db.write() as session:
            # That a search happened and how much it found; never the clear text sought.
            audit.append(
                session,
                actor=current_officer().actor,
                action="identity_proof.searched",
                at=_now(),
                details={"field": field, "results": len(proofs) + len(certificates)},
            )
    return render_template(
        "ra_admin/search.html",
        field=field,
        q=text,
        proofs=proofs,
        certificates=certificates,
        fields=[*queries.SEARCH_FIELDS, "serial"],
        error=error,
    )


@bp.get("/proofs/<proof_id>/subject")
@role_required(*READERS)
def subject(proof_id: str) -> ResponseReturnValue:
    ctx = context()
    proof = _proof(proof_id)
    if proof.status == "purged":
        raise PageError(409, f"identity proof {proof.id} was purged at the end of retention")
    record = open_proof(ctx.sealer, proof)
    _record_view(proof, "subject")
    with ctx.db.read() as session:
        proofs = queries.proofs_with_terms(session, queries.subject_terms(ctx.sealer, record))
        if proof.id not in {p.id for p in proofs}:
            proofs.insert(0, proof)
        certificates = queries.certificates_of(session, [p.id for p in proofs])
    return render_template(
        "ra_admin/subject.html",
        proof=proof,
        subject=record.get("subject") or {},
        proofs=proofs,
        certificates=certificates,
        may_decide=current_officer().role in DECIDERS,
        reasons=list(REVOCATION_REASONS),
        done=request.args.get("done", ""),
    )


@bp.post("/certificates/<int:certificate_id>/revoke")
@role_required(*DECIDERS)
def revoke(certificate_id: int) -> ResponseReturnValue:
    ctx = context()
    reason = request.form.get("reason", "")
    if reason not in REVOCATION_REASONS:
        raise PageError(422, f"reason must be one of {', '.join(REVOCATION_REASONS)}")
    with ctx.db.read() as session:
        row = session.get(Certificate, certificate_id)
        owner = session.get(ApiClient, row.client_id) if row and row.client_id else None
    if row is None or row.status not in {"issued", "revoked"}:
        raise PageError(404, f"no certificate {certificate_id}")
    if owner is None:
        raise PageError(
            409, "this certificate belongs to no platform client: revoke it from the CA"
        )
    revoke_certificate(
        ctx.db,
        row.id,
        actor=current_officer().actor,
        reason=reason,
        invalidity_date=None,
        now=_now(),
    )
    target = row.proof_id
    if target:
        return redirect_to(url_for("ra_admin.subject", proof_id=target, done="revoked"))
    return redirect_to(url_for("ra_admin.search", field="serial", q=row.serial))


@bp.post("/proofs/<proof_id>/legal-hold")
@role_required(Role.ADMIN)
def legal_hold(proof_id: str) -> ResponseReturnValue:
    ctx = context()
    actor = current_officer().actor
    if request.form.get("action") == "release":
        proof = retention.release_legal_hold(ctx.db, proof_id[:64], actor=actor, now=_now())
    else:
        reason = _form_text("reason")
        proof = retention.set_legal_hold(ctx.db, proof_id[:64], reason, actor=actor, now=_now())
    return redirect_to(url_for("ra_admin.review", proof_id=proof.id, done="hold"))


@bp.get("/officers")
@role_required(Role.ADMIN)
def officers() -> ResponseReturnValue:
    with context().db.read() as session:
        rows = list(session.scalars(select(Officer).order_by(Officer.name)))
    return render_template("ra_admin/officers.html", officers=rows, now=_now())
