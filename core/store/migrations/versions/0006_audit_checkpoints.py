"""audit checkpoints and indexed audit filters

``audit_checkpoints`` holds each signed, timestamped Merkle checkpoint of the audit log.
``audit_events`` gains the columns the auditor UI filters on (profile, serial, proof), copied
from ``details`` when the event is appended (they are not hashed: ``sceau audit verify``
checks they match the hashed details), and one index per filter ending in ``seq`` so that
each filtered list pages by seq (keyset) without scanning the table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_UTC = sa.DateTime(timezone=True)


def _field(details: Any, key: str, size: int) -> str | None:
    value = details.get(key) if isinstance(details, dict) else None
    return value if isinstance(value, str) and len(value) <= size else None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.String(length=64), nullable=False),
        sa.Column("head_hash", sa.String(length=64), nullable=False),
        sa.Column("at", _UTC, nullable=False),
        sa.Column("statement", sa.LargeBinary(), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("key_label", sa.String(length=128), nullable=False),
        sa.Column("signer_id", sa.Integer(), nullable=True),
        sa.Column("timestamp_token", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["signer_id"], ["signers.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tree_size", name="uq_audit_checkpoints_tree_size"),
    )
    with op.batch_alter_table("audit_events") as batch:
        batch.add_column(sa.Column("profile", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("serial", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("proof_id", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT seq, details FROM audit_events")).all()
    for seq, raw in rows:
        details = json.loads(raw) if isinstance(raw, str) else raw
        bind.execute(
            sa.text(
                "UPDATE audit_events SET profile = :p, serial = :s, proof_id = :r WHERE seq = :q"
            ),
            {
                "p": _field(details, "profile", 64),
                "s": _field(details, "serial", 40),
                "r": _field(details, "proof", 64),
                "q": seq,
            },
        )
    with op.batch_alter_table("audit_events") as batch:
        batch.create_index("ix_audit_events_at", ["at", "seq"], unique=False)
        batch.create_index("ix_audit_events_actor", ["actor", "seq"], unique=False)
        batch.create_index("ix_audit_events_profile", ["profile", "seq"], unique=False)
        batch.create_index("ix_audit_events_serial", ["serial", "seq"], unique=False)
        batch.create_index("ix_audit_events_proof", ["proof_id", "seq"], unique=False)
        # Issuance statistics per profile and month read this index alone.
        batch.create_index("ix_audit_events_stats", ["action", "profile", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as batch:
        for name in ("at", "actor", "profile", "serial", "proof", "stats"):
            batch.drop_index(f"ix_audit_events_{name}")
        batch.drop_column("proof_id")
        batch.drop_column("serial")
        batch.drop_column("profile")
    op.drop_table("audit_checkpoints")
