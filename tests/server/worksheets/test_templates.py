"""Templates follow a small strict schema, and every error names the field it is about."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from server.worksheets.templates import (
    ChecklistField,
    ChoiceField,
    DateField,
    GroupField,
    ScaleField,
    Template,
    TemplateError,
    TextField,
    parse_template,
    parse_template_json,
    template_to_json,
)

VALID: dict[str, Any] = {
    "id": "check-in",
    "title": "Check-in",
    "instructions": "A few minutes for you.",
    "fields": [
        {"id": "name", "label": "Name", "kind": "short_text"},
        {"id": "story", "label": "Story", "kind": "long_text", "help": "Take your time."},
        {"id": "mood", "label": "Mood", "kind": "scale", "min_label": "low", "max_label": "high"},
        {"id": "who", "label": "Who", "kind": "choice", "options": ["me", "them"]},
        {"id": "values", "label": "Values", "kind": "checklist", "options": ["Trust"]},
        {
            "id": "rows",
            "label": "Rows",
            "kind": "group",
            "max_rows": 3,
            "fields": [
                {"id": "what", "label": "What", "kind": "short_text", "max_length": 50},
                {"id": "when", "label": "When", "kind": "date", "required": True},
            ],
        },
        {"id": "day", "label": "Day", "kind": "date"},
    ],
}


def with_changes(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """VALID with the value at `path` replaced (or removed, for ...)."""
    data = copy.deepcopy(VALID)
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def error_of(data: object) -> str:
    with pytest.raises(TemplateError) as caught:
        parse_template(data)
    return str(caught.value)


def test_a_valid_template_parses_into_typed_fields() -> None:
    template = parse_template(VALID)

    assert template.id == "check-in"
    assert [type(field) for field in template.fields] == [
        TextField,
        TextField,
        ScaleField,
        ChoiceField,
        ChecklistField,
        GroupField,
        DateField,
    ]
    name, story, mood, who, values, rows, day = template.fields
    assert name == TextField("name", "Name", "short_text", 200)
    assert story == TextField("story", "Story", "long_text", 5000, help="Take your time.")
    assert mood == ScaleField("mood", "Mood", min_label="low", max_label="high")
    assert who == ChoiceField("who", "Who", ("me", "them"))
    assert values == ChecklistField("values", "Values", ("Trust",))
    assert rows == GroupField(
        "rows",
        "Rows",
        (TextField("what", "What", "short_text", 50), DateField("when", "When", required=True)),
        max_rows=3,
    )
    assert day == DateField("day", "Day")


def test_defaults_fill_in_what_is_left_out() -> None:
    template = parse_template(
        {
            "id": "t",
            "title": "T",
            "fields": [
                {
                    "id": "g",
                    "label": "G",
                    "kind": "group",
                    "fields": [
                        {"id": "x", "label": "X", "kind": "long_text"},
                    ],
                },
            ],
        }
    )
    assert template.instructions == ""
    group = template.fields[0]
    assert isinstance(group, GroupField)
    assert group.max_rows == 20
    assert group.fields[0] == TextField("x", "X", "long_text", 5000)


def test_templates_are_frozen() -> None:
    template = parse_template(VALID)
    with pytest.raises(AttributeError):
        template.title = "Other"  # type: ignore[misc]


def test_template_to_json_round_trips_through_parse_template() -> None:
    template = parse_template(VALID)
    data = template_to_json(template)
    assert parse_template(json.loads(json.dumps(data))) == template


def test_an_unknown_kind_is_rejected_naming_the_field() -> None:
    data = with_changes(("fields", 2, "kind"), "slider")
    assert error_of(data) == 'fields[2] (id "mood"): unknown kind "slider"'


def test_the_error_carries_path_and_message_separately() -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(with_changes(("fields", 2, "kind"), "slider"))
    assert caught.value.path == 'fields[2] (id "mood")'
    assert caught.value.message == 'unknown kind "slider"'


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("surprise",), 1, 'unknown key "surprise"'),
        (("fields", 2, "colour"), "red", 'fields[2] (id "mood"): unknown key "colour"'),
        (
            ("fields", 5, "fields", 0, "colour"),
            "red",
            'fields[5] (id "rows").fields[0] (id "what"): unknown key "colour"',
        ),
        (("fields", 2, "max_length"), 10, 'fields[2] (id "mood"): unknown key "max_length"'),
        (("fields", 0, "options"), ["a", "b"], 'fields[0] (id "name"): unknown key "options"'),
    ],
)
def test_unknown_keys_are_rejected_naming_where(
    path: tuple[str | int, ...], value: Any, expected: str
) -> None:
    assert error_of(with_changes(path, value)) == expected


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("id",), "Check In", "id: must be a slug"),
        (("id",), "a" * 65, "id: must be at most 64 characters long"),
        (("title",), "", "title: must not be empty"),
        (("title",), "   ", "title: must not be empty"),
        (("title",), "x" * 121, "title: must be at most 120 characters long"),
        (("title",), ..., "title: is required"),
        (("instructions",), "x" * 2001, "instructions: must be at most 2000 characters long"),
        (("fields",), [], "fields: must have from 1 to 50 entries, got 0"),
        (("fields", 1, "id"), "name", 'fields[1] (id "name"): the id "name" is used twice'),
        (("fields", 1, "id"), "Story!", 'fields[1] (id "Story!").id: must be a slug'),
        (("fields", 1, "kind"), ..., 'fields[1] (id "story").kind: is required'),
        (("fields", 1, "kind"), 3, 'fields[1] (id "story"): unknown kind 3'),
        (("fields", 1, "label"), "", 'fields[1] (id "story").label: must not be empty'),
        (("fields", 1, "label"), 7, 'fields[1] (id "story").label: must be a string, got 7'),
        (("fields", 1, "help"), "h" * 501, 'fields[1] (id "story").help: must be at most 500'),
        (("fields", 1, "required"), 1, 'fields[1] (id "story").required: must be true or false'),
        (("fields", 0, "max_length"), 501, 'fields[0] (id "name").max_length: must be an integer'),
        (("fields", 1, "max_length"), 20001, 'fields[1] (id "story").max_length: must be an int'),
        (("fields", 1, "max_length"), 0, 'fields[1] (id "story").max_length: must be an integer'),
        (("fields", 1, "max_length"), True, 'fields[1] (id "story").max_length: must be an inte'),
        (("fields", 1, "max_length"), 10.0, 'fields[1] (id "story").max_length: must be an inte'),
        (("fields", 2, "min_label"), "x" * 101, 'fields[2] (id "mood").min_label: must be at most'),
        (("fields", 3, "options"), ["me"], 'fields[3] (id "who").options: must have from 2 to 20'),
        (
            ("fields", 3, "options"),
            ["me", "me"],
            'fields[3] (id "who").options[1]: the option "me" is listed twice',
        ),
        (("fields", 3, "options"), ["me", ""], 'fields[3] (id "who").options[1]: must be a non-'),
        (("fields", 3, "options"), ..., 'fields[3] (id "who").options: is required'),
        (("fields", 4, "options"), [], 'fields[4] (id "values").options: must have from 1 to 30'),
        (
            ("fields", 4, "options"),
            [f"v{i}" for i in range(31)],
            'fields[4] (id "values").options: must have from 1 to 30 entries, got 31',
        ),
        (("fields", 5, "max_rows"), 51, 'fields[5] (id "rows").max_rows: must be an integer'),
        (("fields", 5, "fields"), [], 'fields[5] (id "rows").fields: must have from 1 to 10'),
        (
            ("fields", 5, "fields", 1, "kind"),
            "checklist",
            'fields[5] (id "rows").fields[1] (id "when"): '
            'a field of kind "checklist" is not allowed here',
        ),
        (
            ("fields", 5, "fields", 1, "kind"),
            "group",
            'fields[5] (id "rows").fields[1] (id "when"): a field of kind "group" is not allowed',
        ),
        (
            ("fields", 5, "fields", 1, "id"),
            "what",
            'fields[5] (id "rows").fields[1] (id "what"): the id "what" is used twice',
        ),
        (("fields", 6), "day", 'fields[6]: must be an object, got "day"'),
    ],
)
def test_invalid_values_are_rejected_naming_the_field(
    path: tuple[str | int, ...], value: Any, expected: str
) -> None:
    assert error_of(with_changes(path, value)).startswith(expected)


def test_more_than_fifty_fields_are_rejected() -> None:
    fields = [{"id": f"f{i}", "label": "F", "kind": "date"} for i in range(51)]
    assert error_of({"id": "t", "title": "T", "fields": fields}) == (
        "fields: must have from 1 to 50 entries, got 51"
    )


def test_a_template_must_be_an_object() -> None:
    assert error_of([VALID]) == "must be an object, got an array"


def test_a_group_may_repeat_an_id_used_outside_it() -> None:
    data = with_changes(("fields", 5, "fields", 0, "id"), "name")
    group = parse_template(data).field("rows")
    assert isinstance(group, GroupField)
    assert group.fields[0].id == "name"


def test_field_finds_a_field_by_id() -> None:
    template = parse_template(VALID)
    assert template.field("day") == DateField("day", "Day")
    with pytest.raises(KeyError):
        template.field("nope")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": "t", "id": "u", "title": "T", "fields": []}', 'repeated key "id"'),
        (
            '{"id": "t", "title": "T", "fields": [{"id": "s", "label": "S", "kind": "scale", '
            '"max_label": NaN}]}',
            "NaN is not JSON",
        ),
        ('{"id": "t", ', "not valid JSON"),
    ],
)
def test_parse_template_json_is_strict_about_json(text: str, expected: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template_json(text)
    assert expected in str(caught.value)


def test_parse_template_json_accepts_a_valid_template() -> None:
    assert parse_template_json(json.dumps(VALID)) == parse_template(VALID)
    assert isinstance(parse_template_json(json.dumps(VALID).encode()), Template)
