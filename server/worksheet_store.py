"""Query functions for worksheets and templates; each takes the caller's session.

The caller owns the transaction. Nothing here checks who is asking beyond the ids it is
given: a therapist's id scopes every lookup, so a worksheet or template of another
therapist is simply not found.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Integer, Table, Update, and_, bindparam, or_, select, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.models import Client
from server.worksheet_models import Homework, HomeworkStatus, Worksheet, WorksheetTemplate
from server.worksheets import (
    BUILTIN_TEMPLATES,
    Template,
    builtin_template,
    compact,
    new_document,
    parse_template,
    parse_template_json,
    template_to_json,
)

CUSTOM_PREFIX = "t-"


@dataclass(frozen=True)
class TemplateChoice:
    """A template a therapist can start a worksheet from."""

    key: str
    title: str
    builtin: bool


def custom_key(template_id: int) -> str:
    return f"{CUSTOM_PREFIX}{template_id}"


def _custom_id(key: str) -> int | None:
    digits = key.removeprefix(CUSTOM_PREFIX)
    if digits == key or not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


async def template_choices(session: AsyncSession, therapist_id: int) -> list[TemplateChoice]:
    """The built-in templates, then the therapist's own, by title."""
    builtin = [TemplateChoice(t.id, t.title, True) for t in BUILTIN_TEMPLATES]
    rows = await session.scalars(
        select(WorksheetTemplate)
        .where(WorksheetTemplate.therapist_id == therapist_id)
        .order_by(WorksheetTemplate.title, WorksheetTemplate.id)
    )
    return builtin + [TemplateChoice(custom_key(row.id), row.title, False) for row in rows]


async def find_template(session: AsyncSession, therapist_id: int, key: str) -> Template | None:
    """The template called ``key`` (a built-in slug or ``t-<n>``) if the therapist may use it."""
    template_id = _custom_id(key)
    if template_id is None:
        try:
            return builtin_template(key)
        except KeyError:
            return None
    row = await session.get(WorksheetTemplate, template_id)
    if row is None or row.therapist_id != therapist_id:
        return None
    return parse_template_json(row.body)


async def create_worksheet(
    session: AsyncSession,
    *,
    therapist_id: int,
    client_id: int,
    appointment_id: int | None,
    template_key: str,
    template: Template,
    now: dt.datetime,
) -> Worksheet:
    """A new, empty worksheet on the client's record (flushed, so it has an id)."""
    doc = new_document(template)
    worksheet = Worksheet(
        therapist_id=therapist_id,
        client_id=client_id,
        appointment_id=appointment_id,
        template_key=template_key,
        template_json=json.dumps(template_to_json(template), ensure_ascii=False),
        title=template.title,
        state=compact(doc),
        content=json.dumps({}),
        revision=0,
        created_at=now,
        updated_at=now,
    )
    session.add(worksheet)
    await session.flush()
    return worksheet


def worksheet_template(worksheet: Worksheet) -> Template:
    """The template the worksheet was started from, as it was then."""
    return parse_template(json.loads(worksheet.template_json))


async def find_worksheet(
    session: AsyncSession, worksheet_id: int, *, therapist_id: int | None = None
) -> Worksheet | None:
    """The worksheet, if it exists (and belongs to ``therapist_id`` when given)."""
    worksheet = await session.get(Worksheet, worksheet_id)
    if worksheet is None:
        return None
    if therapist_id is not None and worksheet.therapist_id != therapist_id:
        return None
    return worksheet


async def client_worksheets(
    session: AsyncSession, therapist_id: int, client_id: int
) -> list[Worksheet]:
    """Every worksheet on the client's record, newest first."""
    rows = await session.scalars(
        select(Worksheet)
        .where(Worksheet.therapist_id == therapist_id, Worksheet.client_id == client_id)
        .order_by(Worksheet.updated_at.desc(), Worksheet.id.desc())
    )
    return list(rows)


async def homework_of(session: AsyncSession, worksheet_ids: list[int]) -> dict[int, Homework]:
    """The latest homework assignment of each worksheet that has one."""
    if not worksheet_ids:
        return {}
    rows = await session.scalars(
        select(Homework)
        .where(Homework.worksheet_id.in_(worksheet_ids))
        .order_by(Homework.assigned_at, Homework.id)
    )
    return {row.worksheet_id: row for row in rows}


_WORKSHEETS: Table = Worksheet.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Save:
    """A document to store with ``save_states``, if its revision is still ``expected``."""

    worksheet_id: int
    state: bytes
    content: str
    expected: int


#: At most this many worksheets go in one statement (four parameters each).
SAVES_PER_STATEMENT = 64


def _statement_rows(count: int) -> int:
    """The rows of the statement that stores ``count`` documents: the next power of two,
    the rest left empty.  So there are only a handful of statements to build and compile,
    each kept once made (one for 64 rows takes about 1 MiB)."""
    return 1 << (count - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _save_statement(rows: int) -> Update:
    """The ``UPDATE`` that stores up to ``rows`` documents: joined to the rows given, one
    ``SELECT`` of bound parameters each (``w_id_0``, ``w_state_0``, … and ``w_now``); a
    row with no id matches nothing.

    Built once for each number of rows, and of parameters only, so the database layer
    compiles it once too.  Rows given as ``VALUES`` cannot be cached: compiling fifty of
    them took 3 to 4 ms, on every batch, with the event loop held up meanwhile."""
    selects = [
        select(
            bindparam(f"w_id_{k}", type_=Integer).label("w_id"),
            bindparam(f"w_state_{k}", type_=_WORKSHEETS.c.state.type).label("w_state"),
            bindparam(f"w_content_{k}", type_=_WORKSHEETS.c.content.type).label("w_content"),
            bindparam(f"w_expected_{k}", type_=Integer).label("w_expected"),
        )
        for k in range(rows)
    ]
    given = (union_all(*selects) if rows > 1 else selects[0]).cte("saved")
    return (
        update(_WORKSHEETS)
        .where(_WORKSHEETS.c.id == given.c.w_id)
        .where(_WORKSHEETS.c.revision == given.c.w_expected)
        .values(
            state=given.c.w_state,
            content=given.c.w_content,
            revision=_WORKSHEETS.c.revision + 1,
            updated_at=bindparam("w_now", type_=_WORKSHEETS.c.updated_at.type),
        )
        .returning(_WORKSHEETS.c.id, _WORKSHEETS.c.revision)
    )


async def save_states(
    session: AsyncSession, saves: Sequence[Save], *, now: dt.datetime
) -> dict[int, int]:
    """Store several documents and their renderings, each whose revision is still the one
    expected; the new revision of each stored, by worksheet id.  One missing was not
    stored: it is gone, or someone else saved it meanwhile.

    One statement for up to ``SAVES_PER_STATEMENT`` of them: a batch of fifty saves was
    fifty statements, each a trip to the database (to SQLite's thread, or over the network
    to PostgreSQL).  A statement on the table, without loading the rows: through the mapped
    class, saves also went through the ORM's bulk-update machinery, which has no object to
    keep in step here.
    """
    stored: dict[int, int] = {}
    for start in range(0, len(saves), SAVES_PER_STATEMENT):
        chunk = saves[start : start + SAVES_PER_STATEMENT]
        rows = _statement_rows(len(chunk))
        given: list[tuple[int | None, bytes | None, str | None, int | None]] = [
            (s.worksheet_id, s.state, s.content, s.expected) for s in chunk
        ]
        given += [(None, None, None, None)] * (rows - len(chunk))  # rows that match nothing
        parameters: dict[str, object] = {"w_now": now}
        for k, (worksheet_id, state, content, expected) in enumerate(given):
            parameters[f"w_id_{k}"] = worksheet_id
            parameters[f"w_state_{k}"] = state
            parameters[f"w_content_{k}"] = content
            parameters[f"w_expected_{k}"] = expected
        result = await session.execute(_save_statement(rows), parameters)
        stored.update((row[0], row[1]) for row in result)
    return stored


async def stored_state(session: AsyncSession, worksheet_id: int) -> tuple[bytes, int] | None:
    """The stored document and its revision, locked until the transaction ends (None: the
    worksheet is gone)."""
    row = (
        await session.execute(
            select(Worksheet.state, Worksheet.revision)
            .where(Worksheet.id == worksheet_id)
            .with_for_update()
        )
    ).first()
    return None if row is None else (bytes(row[0]), int(row[1]))


# Homework


#: The homework states in which the client may still open and fill in the worksheet.
OPEN_HOMEWORK = (HomeworkStatus.ASSIGNED.value, HomeworkStatus.STARTED.value)


def homework_open(homework: Homework, now: dt.datetime) -> bool:
    """Whether the homework's link and page still work: not done, withdrawn or expired."""
    return homework.status in OPEN_HOMEWORK and homework.expires_at > now


async def open_homework_of_worksheet(session: AsyncSession, worksheet_id: int) -> list[Homework]:
    """The worksheet's homework that is assigned or started (normally one at most)."""
    rows = await session.scalars(
        select(Homework).where(
            Homework.worksheet_id == worksheet_id, Homework.status.in_(OPEN_HOMEWORK)
        )
    )
    return list(rows)


@dataclass(frozen=True)
class HomeworkLine:
    """A homework assignment as the therapist's dashboard lists it."""

    homework: Homework
    client_id: int
    client_name: str
    title: str


async def homework_overview(
    session: AsyncSession, therapist_id: int, completed_since: dt.datetime
) -> list[HomeworkLine]:
    """The therapist's open homework, and what was completed since ``completed_since``:
    by due date (none last), then by when it was assigned."""
    rows = await session.execute(
        select(Homework, Client.id, Client.name, Worksheet.title)
        .join(Worksheet, Worksheet.id == Homework.worksheet_id)
        .join(Client, Client.id == Homework.client_id)
        .where(
            Homework.therapist_id == therapist_id,
            or_(
                Homework.status.in_(OPEN_HOMEWORK),
                and_(
                    Homework.status == HomeworkStatus.COMPLETED.value,
                    Homework.completed_at >= completed_since,
                ),
            ),
        )
        .order_by(Homework.due_on.is_(None), Homework.due_on, Homework.assigned_at, Homework.id)
    )
    return [HomeworkLine(homework, cid, name, title) for homework, cid, name, title in rows.all()]
