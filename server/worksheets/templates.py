"""Worksheet templates: a small, strictly checked JSON schema (see docs/WORKSHEETS.md).

`parse_template` turns JSON data into frozen dataclasses, or raises a `TemplateError` whose
path names the offending field (``fields[2] (id "mood"): unknown kind "slider"``).
`template_to_json` is its inverse. Lengths are counted in Unicode code points.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, TypeVar

KINDS = ("short_text", "long_text", "scale", "choice", "checklist", "group", "date")
ROW_KINDS = ("short_text", "long_text", "scale", "choice", "date")
"""The kinds a repeating group's sub-fields may have."""

SCALE_MIN = 0
SCALE_MAX = 10
MAX_ID_LENGTH = 64
MAX_TITLE_LENGTH = 120
MAX_INSTRUCTIONS_LENGTH = 2000
MAX_FIELDS = 50
MAX_LABEL_LENGTH = 200
MAX_HELP_LENGTH = 500
MAX_SCALE_LABEL_LENGTH = 100
MAX_OPTION_LENGTH = 200
MAX_GROUP_FIELDS = 10
MAX_GROUP_ROWS = 50
DEFAULT_GROUP_ROWS = 20
TEXT_LIMITS: dict[str, tuple[int, int]] = {
    # kind: (default max_length, largest allowed max_length)
    "short_text": (200, 500),
    "long_text": (5000, 20000),
}
OPTION_COUNTS = {"choice": (2, 20), "checklist": (1, 30)}

F = TypeVar("F")

_SLUG = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")


class TemplateError(ValueError):
    """A template that does not follow the schema. `path` names where, `message` says what."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class TextField:
    id: str
    label: str
    kind: Literal["short_text", "long_text"]
    max_length: int
    help: str = ""
    required: bool = False


@dataclass(frozen=True)
class ScaleField:
    id: str
    label: str
    min_label: str = ""
    max_label: str = ""
    help: str = ""
    required: bool = False
    kind: Literal["scale"] = "scale"


@dataclass(frozen=True)
class ChoiceField:
    id: str
    label: str
    options: tuple[str, ...]
    help: str = ""
    required: bool = False
    kind: Literal["choice"] = "choice"


@dataclass(frozen=True)
class DateField:
    id: str
    label: str
    help: str = ""
    required: bool = False
    kind: Literal["date"] = "date"


@dataclass(frozen=True)
class ChecklistField:
    id: str
    label: str
    options: tuple[str, ...]
    help: str = ""
    required: bool = False
    kind: Literal["checklist"] = "checklist"


RowField: TypeAlias = TextField | ScaleField | ChoiceField | DateField
"""A field that may appear in a row of a repeating group."""


@dataclass(frozen=True)
class GroupField:
    id: str
    label: str
    fields: tuple[RowField, ...]
    max_rows: int = DEFAULT_GROUP_ROWS
    help: str = ""
    required: bool = False
    kind: Literal["group"] = "group"


Field: TypeAlias = RowField | ChecklistField | GroupField


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    instructions: str
    fields: tuple[Field, ...]

    def field(self, field_id: str) -> Field:
        """The field with this id; `KeyError` if there is none."""
        for field in self.fields:
            if field.id == field_id:
                return field
        raise KeyError(field_id)


class _Object:
    """A JSON object being read: each key is taken once, and leftover keys are errors."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, dict):
            raise TemplateError(path, f"must be an object, got {_describe(data)}")
        for key in data:
            if not isinstance(key, str):
                raise TemplateError(path, f"keys must be strings, got {_describe(key)}")
        self.data: dict[str, object] = data
        self.path = path
        self.taken: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def take(self, key: str) -> object:
        self.taken.add(key)
        if key not in self.data:
            raise TemplateError(self.at(key), "is required")
        return self.data[key]

    def has(self, key: str) -> bool:
        return key in self.data

    def string(self, key: str, low: int, high: int, default: str | None = None) -> str:
        if default is not None and key not in self.data:
            self.taken.add(key)
            return default
        value = self.take(key)
        if not isinstance(value, str):
            raise TemplateError(self.at(key), f"must be a string, got {_describe(value)}")
        if len(value) > high:
            raise TemplateError(self.at(key), f"must be at most {high} characters long")
        if low > 0 and not value.strip():
            raise TemplateError(self.at(key), "must not be empty")
        return value

    def integer(self, key: str, low: int, high: int, default: int) -> int:
        if key not in self.data:
            self.taken.add(key)
            return default
        value = self.take(key)
        if type(value) is not int or not low <= value <= high:
            raise TemplateError(
                self.at(key), f"must be an integer from {low} to {high}, got {_describe(value)}"
            )
        return value

    def boolean(self, key: str) -> bool:
        if key not in self.data:
            self.taken.add(key)
            return False
        value = self.take(key)
        if not isinstance(value, bool):
            raise TemplateError(self.at(key), f"must be true or false, got {_describe(value)}")
        return value

    def slug(self, key: str) -> str:
        value = self.take(key)
        if not isinstance(value, str) or not _SLUG.fullmatch(value):
            raise TemplateError(
                self.at(key),
                "must be a slug (lower-case letters and digits, joined by single - or _), "
                f"got {_describe(value)}",
            )
        if len(value) > MAX_ID_LENGTH:
            raise TemplateError(self.at(key), f"must be at most {MAX_ID_LENGTH} characters long")
        return value

    def array(self, key: str, low: int, high: int) -> list[object]:
        value = self.take(key)
        if not isinstance(value, list):
            raise TemplateError(self.at(key), f"must be an array, got {_describe(value)}")
        if not low <= len(value) <= high:
            raise TemplateError(
                self.at(key), f"must have from {low} to {high} entries, got {len(value)}"
            )
        return value

    def finish(self) -> None:
        for key in self.data:
            if key not in self.taken:
                raise TemplateError(self.path, f"unknown key {json.dumps(key)}")


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_template(data: object) -> Template:
    """Check `data` (as from `json.loads`) against the schema and build a `Template`."""
    obj = _Object(data, "")
    template_id = obj.slug("id")
    title = obj.string("title", 1, MAX_TITLE_LENGTH)
    instructions = obj.string("instructions", 0, MAX_INSTRUCTIONS_LENGTH, default="")
    raw_fields = obj.array("fields", 1, MAX_FIELDS)
    obj.finish()
    fields = _parse_fields(raw_fields, "fields", KINDS, _parse_field)
    return Template(id=template_id, title=title, instructions=instructions, fields=fields)


def parse_template_json(text: str | bytes) -> Template:
    """Parse a template from JSON text, refusing repeated keys, NaN and Infinity."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise TemplateError("", f"repeated key {json.dumps(key)}")
            result[key] = value
        return result

    def constant(name: str) -> None:
        raise TemplateError("", f"{name} is not JSON")

    try:
        data = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except json.JSONDecodeError as error:
        raise TemplateError("", f"not valid JSON: {error}") from None
    return parse_template(data)


def _parse_fields(
    raw: list[object],
    path: str,
    kinds: tuple[str, ...],
    parse: Callable[[_Object, str, str], F],
) -> tuple[F, ...]:
    fields: list[F] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            where += f" (id {_describe(item['id'])})"
        obj = _Object(item, where)
        field_id = obj.slug("id")
        if field_id in seen:
            raise TemplateError(where, f"the id {json.dumps(field_id)} is used twice")
        seen.add(field_id)
        kind = obj.take("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            raise TemplateError(where, f"unknown kind {_describe(kind)}")
        if kind not in kinds:
            raise TemplateError(where, f"a field of kind {json.dumps(kind)} is not allowed here")
        fields.append(parse(obj, field_id, kind))
        obj.finish()
    return tuple(fields)


def _parse_field(obj: _Object, field_id: str, kind: str) -> Field:
    if kind == "checklist":
        label, help_text, required = _common(obj)
        options = _options(obj, kind)
        return ChecklistField(field_id, label, options, help_text, required)
    if kind == "group":
        label, help_text, required = _common(obj)
        raw = obj.array("fields", 1, MAX_GROUP_FIELDS)
        fields = _parse_fields(raw, obj.at("fields"), ROW_KINDS, _parse_row_field)
        max_rows = obj.integer("max_rows", 1, MAX_GROUP_ROWS, DEFAULT_GROUP_ROWS)
        return GroupField(field_id, label, fields, max_rows, help_text, required)
    return _parse_row_field(obj, field_id, kind)


def _parse_row_field(obj: _Object, field_id: str, kind: str) -> RowField:
    label, help_text, required = _common(obj)
    if kind in TEXT_LIMITS:
        text_kind: Literal["short_text", "long_text"] = (
            "short_text" if kind == "short_text" else "long_text"
        )
        default, largest = TEXT_LIMITS[kind]
        max_length = obj.integer("max_length", 1, largest, default)
        return TextField(field_id, label, text_kind, max_length, help_text, required)
    if kind == "scale":
        min_label = obj.string("min_label", 0, MAX_SCALE_LABEL_LENGTH, default="")
        max_label = obj.string("max_label", 0, MAX_SCALE_LABEL_LENGTH, default="")
        return ScaleField(field_id, label, min_label, max_label, help_text, required)
    if kind == "choice":
        return ChoiceField(field_id, label, _options(obj, kind), help_text, required)
    assert kind == "date", kind
    return DateField(field_id, label, help_text, required)


def _common(obj: _Object) -> tuple[str, str, bool]:
    label = obj.string("label", 1, MAX_LABEL_LENGTH)
    help_text = obj.string("help", 0, MAX_HELP_LENGTH, default="")
    return label, help_text, obj.boolean("required")


def _options(obj: _Object, kind: str) -> tuple[str, ...]:
    low, high = OPTION_COUNTS[kind]
    raw = obj.array("options", low, high)
    options: list[str] = []
    for index, option in enumerate(raw):
        where = f"{obj.at('options')}[{index}]"
        if not isinstance(option, str) or not option.strip():
            raise TemplateError(where, f"must be a non-empty string, got {_describe(option)}")
        if len(option) > MAX_OPTION_LENGTH:
            raise TemplateError(where, f"must be at most {MAX_OPTION_LENGTH} characters long")
        if option in options:
            raise TemplateError(where, f"the option {_describe(option)} is listed twice")
        options.append(option)
    return tuple(options)


def template_to_json(template: Template) -> dict[str, Any]:
    """The template as JSON data; `parse_template` of it gives back an equal template."""
    return {
        "id": template.id,
        "title": template.title,
        "instructions": template.instructions,
        "fields": [_field_to_json(field) for field in template.fields],
    }


def _field_to_json(field: Field) -> dict[str, Any]:
    data: dict[str, Any] = {"id": field.id, "label": field.label, "kind": field.kind}
    if field.help:
        data["help"] = field.help
    if field.required:
        data["required"] = True
    if isinstance(field, TextField):
        data["max_length"] = field.max_length
    elif isinstance(field, ScaleField):
        if field.min_label:
            data["min_label"] = field.min_label
        if field.max_label:
            data["max_label"] = field.max_label
    elif isinstance(field, ChoiceField | ChecklistField):
        data["options"] = list(field.options)
    elif isinstance(field, GroupField):
        data["fields"] = [_field_to_json(sub) for sub in field.fields]
        data["max_rows"] = field.max_rows
    return data
