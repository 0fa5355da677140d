"""sealed identity proofs, evidence files, webhooks, officers and their sessions

Identity proofs lose their clear ``subject`` and ``document`` columns for a sealed record
(core.hsm.envelope). Sealing needs the token, which a migration does not open: no release ever
stored proofs in clear outside development, so the upgrade refuses a database that holds
some rather than dropping them (re-create the development home with ``sceau init``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM identity_proofs")).scalar()
    if count:
        raise RuntimeError(
            f"identity_proofs holds {count} proof(s) in clear: migration 0005 seals proofs and"
            " cannot open the token; re-create this development home (sceau init)"
        )
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("webhook_secret_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("webhook_secret_wrapped", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("identity_proofs") as batch:
        batch.drop_column("subject")
        batch.drop_column("document")
        batch.alter_column("client_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("submitted_by", sa.String(length=128), nullable=False))
        batch.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("document_expires_at", _UTC, nullable=True))
        batch.add_column(sa.Column("decided_at", _UTC, nullable=True))
        batch.add_column(sa.Column("rejection_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("legal_hold", sa.Text(), nullable=True))
        batch.add_column(sa.Column("purged_at", _UTC, nullable=True))
        batch.add_column(sa.Column("webhook_url", sa.String(length=512), nullable=True))
        batch.create_index("ix_identity_proofs_queue", ["status", "created_at"])
        batch.create_index("ix_identity_proofs_retain", ["purged_at", "retain_until"])
    op.create_table(
        "proof_terms",
        sa.Column("proof_id", sa.String(length=32), nullable=False),
        sa.Column("term", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["proof_id"], ["identity_proofs.id"]),
        sa.PrimaryKeyConstraint("proof_id", "term"),
    )
    op.create_index("ix_proof_terms_term", "proof_terms", ["term"])
    op.create_table(
        "evidence_files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("proof_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("media_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=True),
        sa.Column("uploaded_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["proof_id"], ["identity_proofs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_evidence_files_proof", "evidence_files", ["proof_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("proof_id", sa.String(length=32), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _UTC, nullable=False),
        sa.Column("delivered_at", _UTC, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["proof_id"], ["identity_proofs.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["delivered_at", "next_attempt_at"]
    )
    op.create_table(
        "officers",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("totp_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("totp_wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", _UTC, nullable=True),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("disabled_at", _UTC, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "officer_sessions",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("officer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _UTC, nullable=False),
        sa.Column("last_seen_at", _UTC, nullable=False),
        sa.Column("expires_at", _UTC, nullable=False),
        sa.ForeignKeyConstraint(["officer_id"], ["officers.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_officer_sessions_officer", "officer_sessions", ["officer_id"])


def downgrade() -> None:
    op.drop_index("ix_officer_sessions_officer", table_name="officer_sessions")
    op.drop_table("officer_sessions")
    op.drop_table("officers")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_evidence_files_proof", table_name="evidence_files")
    op.drop_table("evidence_files")
    op.drop_index("ix_proof_terms_term", table_name="proof_terms")
    op.drop_table("proof_terms")
    with op.batch_alter_table("identity_proofs") as batch:
        batch.drop_index("ix_identity_proofs_retain")
        batch.drop_index("ix_identity_proofs_queue")
        for column in (
            "webhook_url",
            "purged_at",
            "legal_hold",
            "rejection_reason",
            "decided_at",
            "document_expires_at",
            "wrapped_key",
            "sealed",
            "submitted_by",
        ):
            batch.drop_column(column)
        batch.alter_column("client_id", existing_type=sa.Integer(), nullable=False)
        batch.add_column(sa.Column("subject", sa.JSON(), nullable=False))
        batch.add_column(sa.Column("document", sa.JSON(), nullable=False))
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_column("webhook_secret_wrapped")
        batch.drop_column("webhook_secret_sealed")
