"""The stored worksheets: custom templates, worksheets on a client's record, homework.

A worksheet keeps a copy of its template as it was when the worksheet was started, so
editing a template later never changes the shape of a document already written against it.
Its content is stored twice: ``state``, the compacted CRDT update (the source of truth), and
``content``, a plain JSON rendering of the answers for display, search and export.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db import Base, UTCDateTime, utcnow
from server.models import Client, Therapist


class WorksheetTemplate(Base):
    """A therapist's own template; the built-in ones live in code."""

    __tablename__ = "worksheet_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(
        ForeignKey("therapists.id", ondelete="CASCADE"), index=True
    )
    #: The template's own ``id`` (a slug), unique among the therapist's templates.
    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(120))
    #: The template as JSON (docs/WORKSHEETS.md), validated before it is stored.
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("therapist_id", "slug"),)


class Worksheet(Base):
    """One filled-in (or being filled-in) worksheet on a client's record."""

    __tablename__ = "worksheets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id", ondelete="RESTRICT"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    #: The session it was started in, if any.
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointments.id", ondelete="SET NULL"), nullable=True
    )
    #: Where the template came from: a built-in slug, or ``t-<id>`` of a custom template.
    template_key: Mapped[str] = mapped_column(String(80))
    #: The template as it was when the worksheet was started.
    template_json: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(String(120))
    #: The compacted CRDT update: the document itself.
    state: Mapped[bytes] = mapped_column(LargeBinary)
    #: The plain JSON rendering of the answers (``server.worksheets.render``).
    content: Mapped[str] = mapped_column(Text)
    #: How many times the document was saved; raised by every save.
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    therapist: Mapped[Therapist] = relationship()
    client: Mapped[Client] = relationship()

    __table_args__ = (Index("ix_worksheets_client_created", "client_id", "created_at"),)


class CallWorksheet(Base):
    """The worksheet open in an appointment's call, if any: it comes back after a restart."""

    __tablename__ = "call_worksheets"

    appointment_id: Mapped[int] = mapped_column(
        ForeignKey("appointments.id", ondelete="CASCADE"), primary_key=True
    )
    worksheet_id: Mapped[int] = mapped_column(
        ForeignKey("worksheets.id", ondelete="CASCADE"), index=True
    )


class HomeworkStatus(enum.StrEnum):
    ASSIGNED = "assigned"
    STARTED = "started"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


_HOMEWORK_STATUSES = ", ".join(f"'{s.value}'" for s in HomeworkStatus)


class Homework(Base):
    """A worksheet the client carries on with between sessions, through an e-mailed link.

    Only the SHA-256 of the link's token is kept.
    """

    __tablename__ = "homework"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    worksheet_id: Mapped[int] = mapped_column(
        ForeignKey("worksheets.id", ondelete="CASCADE"), index=True
    )
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id", ondelete="RESTRICT"))
    client_id: Mapped[int] = mapped_column(
        ForeignKey("clients.id", ondelete="RESTRICT"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=HomeworkStatus.ASSIGNED.value)
    due_on: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    assigned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    worksheet: Mapped[Worksheet] = relationship()

    __table_args__ = (CheckConstraint(f"status IN ({_HOMEWORK_STATUSES})", name="status_known"),)

    @property
    def state(self) -> HomeworkStatus:
        return HomeworkStatus(self.status)
