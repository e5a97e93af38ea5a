"""A worksheet's content: a `pycrdt.Doc` shaped by its template.

The document has one root, the map ``"fields"``, holding one entry per field of the template:

- short and long text: a `Text`;
- scale: a number from 0 to 10 (Yjs stores it as a double; 7.0 counts as 7), absent or
  null while unanswered;
- choice: one of the options (a string), absent or null while unanswered;
- date: an ISO date string ``YYYY-MM-DD``, absent or null while unanswered;
- checklist: a `Map` from each option to `true` or `false`;
- group: an `Array` of rows, each a `Map` from sub-field id to a cell as above (every text
  cell a `Text`, created with the row).

`new_document` creates every entry once, on the server; participants only ever edit inside
the shared types (and set the plain values), so two people never create the same entry
concurrently, which would make one of their edits lose. `check_limits` enforces the shape
and the limits; `render` gives the plain JSON content.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Collection
from typing import Any, TypeAlias

from pycrdt import Array, Doc, Map, Text
from pycrdt._pycrdt import Map as _RawMap
from pycrdt._pycrdt import Text as _RawText

from server.worksheets.templates import (
    SCALE_MAX,
    SCALE_MIN,
    ChecklistField,
    ChoiceField,
    DateField,
    Field,
    GroupField,
    RowField,
    ScaleField,
    Template,
    TextField,
)

ROOT = "fields"
"""The name of the document's single root map."""

DOCUMENT_LIMIT = 256 * 1024
"""The largest a worksheet may be, in bytes of its encoded state (`compact`)."""

Cell: TypeAlias = str | int | None
Rendered: TypeAlias = str | int | list[str] | list[dict[str, Cell]] | None

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class LimitError(ValueError):
    """A document that does not fit its template: too long, out of range, or misshapen.

    `field_path` names the field (``"mood"``, ``"entries[2].situation"``), or is
    ``"document"`` for the document as a whole.
    """

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message


def new_document(template: Template) -> Doc[Any]:
    """An empty worksheet for `template`, with every field's entry in place."""
    doc: Doc[Any] = Doc()
    with doc.transaction():
        root: Map[Any] = Map()
        doc[ROOT] = root
        for field in template.fields:
            if isinstance(field, TextField):
                root[field.id] = Text()
            elif isinstance(field, ChecklistField):
                root[field.id] = Map(dict.fromkeys(field.options, False))
            elif isinstance(field, GroupField):
                root[field.id] = Array()
    return doc


def add_row(template: Template, doc: Doc[Any], group_id: str) -> int:
    """Append an empty row to the group `group_id`, in one transaction; returns its index.

    A browser adds a row the same way: one `Map` with a `Text` for each text sub-field.
    """
    field = template.field(group_id)
    if not isinstance(field, GroupField):
        raise KeyError(f"{group_id} is not a group")
    rows: object = _root(doc).get(group_id)
    if not isinstance(rows, Array):
        raise LimitError(group_id, "is not an array of rows")
    if len(rows) >= field.max_rows:
        raise LimitError(group_id, f"has the most rows allowed ({field.max_rows})")
    with doc.transaction():
        rows.append(Map({sub.id: Text() for sub in field.fields if isinstance(sub, TextField)}))
    return len(rows) - 1


def compact(doc: Doc[Any]) -> bytes:
    """The document's whole state as one Yjs update (version 1), for storage."""
    return doc.get_update()


def load(template: Template, update: bytes, *, limit: int = DOCUMENT_LIMIT) -> Doc[Any]:
    """A document from a stored `compact` state, checked against `template`.

    Raises `ValueError` if `update` cannot be decoded, `LimitError` if the content does not
    fit the template.
    """
    doc: Doc[Any] = Doc()
    try:
        doc.apply_update(update)
    except Exception as error:
        raise ValueError(f"not a valid Yjs update: {error}") from None
    check_limits(template, doc, limit=limit)
    return doc


def check_limits(
    template: Template,
    doc: Doc[Any],
    *,
    limit: int = DOCUMENT_LIMIT,
    size_bound: int | None = None,
    fields: Collection[str] | None = None,
) -> None:
    """Raise `LimitError` unless `doc` has the template's shape and stays within its limits.

    `size_bound`, if given, is a number of bytes the encoded document is known not to
    exceed: while it is within `limit`, the document is not encoded to measure it.
    `fields`, if given, are the only fields that may have changed since the document was
    last checked (the root map's own entries did not): only those are checked.
    """
    # One read transaction for the whole walk: pycrdt otherwise opens (and commits) one for
    # every access, which made this check most of the cost of an update.
    with doc.transaction():
        if size_bound is None or size_bound > limit:
            size = len(doc.get_update())
            if size > limit:
                raise LimitError(
                    "document", f"is {size} bytes, more than the limit of {limit} bytes"
                )
        roots = sorted(doc.keys())
        if roots != [ROOT]:
            unexpected = [name for name in roots if name != ROOT]
            raise LimitError("document", f"has unexpected roots {unexpected}")
        root = _root(doc)
        if fields is None:
            known = {field.id for field in template.fields}
            for key in list(root.keys()):
                if key not in known:
                    raise LimitError(key, "is not a field of this worksheet")
        for field in template.fields:
            if fields is None or field.id in fields:
                _check_field(field, root, field.id)


def has_only_its_root(doc: Doc[Any], txn: Any) -> bool:
    """Whether `doc`, read in pycrdt's open transaction `txn`, has its one root map and no
    other root.  False says nothing more: `check_limits` tells what is wrong."""
    roots = doc._doc.roots(txn)
    return len(roots) == 1 and type(roots.get(ROOT)) is _RawMap


def text_rooms(texts: Collection[TextField], doc: Doc[Any], txn: Any) -> dict[str, int] | None:
    """How much more each of `texts` can take within its limit, read in pycrdt's open
    transaction `txn`: the limit less the text's length in UTF-8 bytes (at least its length
    in characters, so the room is certain).  None if one is missing or not a text."""
    roots = doc._doc.roots(txn)
    root = roots.get(ROOT)
    if type(root) is not _RawMap:
        return None
    rooms: dict[str, int] = {}
    for field in texts:
        try:
            value = root.get(txn, field.id)
        except ValueError:  # no such key
            return None
        if type(value) is not _RawText:
            return None
        rooms[field.id] = field.max_length - value.len(txn)
    return rooms


def render(template: Template, doc: Doc[Any]) -> dict[str, Rendered]:
    """The plain content of every field, in template order, for search, export and display.

    Text is a string, scale an integer, choice and date a string (each None while
    unanswered), checklist the list of ticked options in template order, group a list of
    row objects. A misshapen entry renders as if empty.
    """
    root = _root(doc)
    result: dict[str, Rendered] = {}
    for field in template.fields:
        value = root.get(field.id)
        if isinstance(field, ChecklistField):
            ticked = dict(value.items()) if isinstance(value, Map) else {}
            result[field.id] = [o for o in field.options if ticked.get(o) is True]
        elif isinstance(field, GroupField):
            rows: list[object] = list(value) if isinstance(value, Array) else []
            result[field.id] = [_render_row(field, row) for row in rows if isinstance(row, Map)]
        else:
            result[field.id] = _render_cell(field, value)
    return result


def _root(doc: Doc[Any]) -> Map[Any]:
    root: Map[Any] = doc.get(ROOT, type=Map)
    return root


def _render_row(group: GroupField, row: Map[Any]) -> dict[str, Cell]:
    return {sub.id: _render_cell(sub, row.get(sub.id)) for sub in group.fields}


def _render_cell(field: RowField, value: object) -> Cell:
    if isinstance(field, TextField):
        return str(value) if isinstance(value, Text) else ""
    if isinstance(field, ScaleField):
        return _scale_value(value)
    if isinstance(field, ChoiceField):
        return value if isinstance(value, str) and value in field.options else None
    return value if _is_date(value) else None  # type: ignore[return-value]


def _check_field(field: Field, container: Map[Any], path: str) -> None:
    value = container.get(field.id)
    if isinstance(field, TextField):
        if not isinstance(value, Text):
            raise LimitError(path, "is not a shared text")
        # A text's own length counts UTF-8 bytes, never fewer than its characters: only a
        # text that may be too long is turned into a string to count them.
        length = len(value)
        if length > field.max_length:
            length = len(str(value))
        if length > field.max_length:
            raise LimitError(
                path, f"is {length} characters long, more than the limit of {field.max_length}"
            )
    elif isinstance(field, ScaleField):
        if value is not None and _scale_value(value) is None:
            raise LimitError(
                path, f"must be a whole number from {SCALE_MIN} to {SCALE_MAX}, got {value!r}"
            )
    elif isinstance(field, ChoiceField):
        if value is not None and value not in field.options:
            raise LimitError(path, f"must be one of the options, got {value!r}")
    elif isinstance(field, DateField):
        if value is not None and not _is_date(value):
            raise LimitError(path, f"must be a date as YYYY-MM-DD, got {value!r}")
    elif isinstance(field, ChecklistField):
        _check_checklist(field, value, path)
    else:
        _check_group(field, value, path)


def _check_checklist(field: ChecklistField, value: object, path: str) -> None:
    if not isinstance(value, Map):
        raise LimitError(path, "is not a shared map of options")
    for option, ticked in value.items():
        if option not in field.options:
            raise LimitError(path, f"has an unknown option {option!r}")
        if not isinstance(ticked, bool):
            raise LimitError(path, f"must map {option!r} to true or false, got {ticked!r}")


def _check_group(field: GroupField, value: object, path: str) -> None:
    if not isinstance(value, Array):
        raise LimitError(path, "is not a shared array of rows")
    if len(value) > field.max_rows:
        raise LimitError(path, f"has {len(value)} rows, more than the limit of {field.max_rows}")
    known = {sub.id for sub in field.fields}
    for index, row in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(row, Map):
            raise LimitError(where, "is not a shared map")
        for key in list(row.keys()):
            if key not in known:
                raise LimitError(f"{where}.{key}", "is not a field of this group")
        for sub in field.fields:
            _check_field(sub, row, f"{where}.{sub.id}")


def _scale_value(value: object) -> int | None:
    """A valid scale value as an int (Yjs numbers are doubles: 7.0 is 7), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if SCALE_MIN <= value <= SCALE_MAX else None


def _is_date(value: object) -> bool:
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True
