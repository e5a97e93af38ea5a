"""participant sessions and the therapist's welcome text

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("therapists") as batch_op:
        batch_op.add_column(
            sa.Column("welcome_text", sa.String(length=2000), nullable=False, server_default="")
        )
    op.create_table(
        "participant_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_participant_sessions_appointment_id_appointments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_participant_sessions")),
    )
    op.create_index(
        op.f("ix_participant_sessions_appointment_id"),
        "participant_sessions",
        ["appointment_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_participant_sessions_appointment_id"), table_name="participant_sessions")
    op.drop_table("participant_sessions")
    with op.batch_alter_table("therapists") as batch_op:
        batch_op.drop_column("welcome_text")
