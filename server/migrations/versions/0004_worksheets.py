"""worksheets: custom templates, worksheets on the client's record, homework; admission

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worksheet_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["therapists.id"],
            name=op.f("fk_worksheet_templates_therapist_id_therapists"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worksheet_templates")),
        sa.UniqueConstraint(
            "therapist_id", "slug", name=op.f("uq_worksheet_templates_therapist_id")
        ),
    )
    with op.batch_alter_table("worksheet_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_worksheet_templates_therapist_id"), ["therapist_id"], unique=False
        )

    op.create_table(
        "worksheets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("appointment_id", sa.Integer(), nullable=True),
        sa.Column("template_key", sa.String(length=80), nullable=False),
        sa.Column("template_json", sa.Text(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_worksheets_appointment_id_appointments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_worksheets_client_id_clients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["therapists.id"],
            name=op.f("fk_worksheets_therapist_id_therapists"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worksheets")),
    )
    with op.batch_alter_table("worksheets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_worksheets_client_created", ["client_id", "created_at"], unique=False
        )

    op.create_table(
        "call_worksheets",
        sa.Column("appointment_id", sa.Integer(), nullable=False),
        sa.Column("worksheet_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_call_worksheets_appointment_id_appointments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["worksheet_id"],
            ["worksheets.id"],
            name=op.f("fk_call_worksheets_worksheet_id_worksheets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("appointment_id", name=op.f("pk_call_worksheets")),
    )
    with op.batch_alter_table("call_worksheets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_call_worksheets_worksheet_id"), ["worksheet_id"], unique=False
        )

    op.create_table(
        "homework",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("worksheet_id", sa.Integer(), nullable=False),
        sa.Column("therapist_id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('assigned', 'started', 'completed', 'withdrawn')",
            name=op.f("ck_homework_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["clients.id"],
            name=op.f("fk_homework_client_id_clients"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["therapist_id"],
            ["therapists.id"],
            name=op.f("fk_homework_therapist_id_therapists"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["worksheet_id"],
            ["worksheets.id"],
            name=op.f("fk_homework_worksheet_id_worksheets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_homework")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_homework_token_hash")),
    )
    with op.batch_alter_table("homework", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_homework_client_id"), ["client_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_homework_worksheet_id"), ["worksheet_id"], unique=False
        )

    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("homework_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_outbox_homework_id"), ["homework_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_homework_id_homework"),
            "homework",
            ["homework_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("appointments", schema=None) as batch_op:
        batch_op.drop_column("admitted_at")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_outbox_homework_id_homework"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_outbox_homework_id"))
        batch_op.drop_column("homework_id")
    with op.batch_alter_table("homework", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_homework_worksheet_id"))
        batch_op.drop_index(batch_op.f("ix_homework_client_id"))
    op.drop_table("homework")
    with op.batch_alter_table("call_worksheets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_call_worksheets_worksheet_id"))
    op.drop_table("call_worksheets")
    with op.batch_alter_table("worksheets", schema=None) as batch_op:
        batch_op.drop_index("ix_worksheets_client_created")
    op.drop_table("worksheets")
    with op.batch_alter_table("worksheet_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_worksheet_templates_therapist_id"))
    op.drop_table("worksheet_templates")
