"""A worksheet document is shaped by its template, renders to plain JSON, and keeps limits."""

from __future__ import annotations

from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text

from server.worksheets import (
    DOCUMENT_LIMIT,
    LimitError,
    add_row,
    check_limits,
    compact,
    load,
    new_document,
    parse_template,
    render,
)

TEMPLATE = parse_template(
    {
        "id": "everything",
        "title": "Every kind",
        "fields": [
            {"id": "word", "label": "Word", "kind": "short_text", "max_length": 10},
            {"id": "story", "label": "Story", "kind": "long_text", "max_length": 100},
            {"id": "mood", "label": "Mood", "kind": "scale"},
            {"id": "who", "label": "Who", "kind": "choice", "options": ["me", "them"]},
            {"id": "values", "label": "Values", "kind": "checklist", "options": ["A", "B", "C"]},
            {
                "id": "rows",
                "label": "Rows",
                "kind": "group",
                "max_rows": 2,
                "fields": [
                    {"id": "what", "label": "What", "kind": "short_text", "max_length": 5},
                    {"id": "how_much", "label": "How much", "kind": "scale"},
                    {"id": "pick", "label": "Pick", "kind": "choice", "options": ["x", "y"]},
                    {"id": "day", "label": "Day", "kind": "date"},
                ],
            },
            {"id": "day", "label": "Day", "kind": "date"},
        ],
    }
)


def fields(doc: Doc[Any]) -> Map[Any]:
    root: Map[Any] = doc.get("fields", type=Map)
    return root


def text(container: Map[Any], key: str) -> Text:
    value = container[key]
    assert isinstance(value, Text)
    return value


def row(doc: Doc[Any], index: int) -> Map[Any]:
    rows = fields(doc)["rows"]
    assert isinstance(rows, Array)
    value = rows[index]
    assert isinstance(value, Map)
    return value


def filled() -> Doc[Any]:
    doc = new_document(TEMPLATE)
    root = fields(doc)
    text(root, "word").insert(0, "calm")
    text(root, "story").insert(0, "We talked.")
    root["mood"] = 7
    root["who"] = "them"
    values = root["values"]
    assert isinstance(values, Map)
    values["A"] = True
    values["C"] = True
    add_row(TEMPLATE, doc, "rows")
    text(row(doc, 0), "what").insert(0, "tea")
    row(doc, 0)["how_much"] = 3.0
    row(doc, 0)["pick"] = "y"
    row(doc, 0)["day"] = "2026-03-02"
    add_row(TEMPLATE, doc, "rows")
    root["day"] = "2026-03-09"
    return doc


def refusal(doc: Doc[Any]) -> LimitError:
    with pytest.raises(LimitError) as caught:
        check_limits(TEMPLATE, doc)
    return caught.value


def test_a_new_document_has_every_shared_entry_in_place() -> None:
    root = fields(new_document(TEMPLATE))
    assert isinstance(root["word"], Text)
    assert isinstance(root["story"], Text)
    assert isinstance(root["values"], Map)
    assert dict(root["values"].items()) == {"A": False, "B": False, "C": False}
    assert isinstance(root["rows"], Array)
    assert sorted(root.keys()) == ["rows", "story", "values", "word"]


def test_a_new_document_renders_empty() -> None:
    assert render(TEMPLATE, new_document(TEMPLATE)) == {
        "word": "",
        "story": "",
        "mood": None,
        "who": None,
        "values": [],
        "rows": [],
        "day": None,
    }


def test_a_filled_document_renders_to_plain_json_in_template_order() -> None:
    doc = filled()
    check_limits(TEMPLATE, doc)
    rendered = render(TEMPLATE, doc)
    assert rendered == {
        "word": "calm",
        "story": "We talked.",
        "mood": 7,
        "who": "them",
        "values": ["A", "C"],
        "rows": [
            {"what": "tea", "how_much": 3, "pick": "y", "day": "2026-03-02"},
            {"what": "", "how_much": None, "pick": None, "day": None},
        ],
        "day": "2026-03-09",
    }
    assert list(rendered) == [field.id for field in TEMPLATE.fields]
    assert type(rendered["mood"]) is int


def test_compact_and_load_round_trip() -> None:
    doc = filled()
    loaded = load(TEMPLATE, compact(doc))
    assert render(TEMPLATE, loaded) == render(TEMPLATE, doc)
    assert compact(loaded) == compact(doc)


def test_loaded_documents_stay_editable_and_mergeable() -> None:
    original = filled()
    copy = load(TEMPLATE, compact(original))
    text(fields(copy), "story").insert(0, "Today ")
    text(fields(original), "story").insert(10, " A lot.")
    original.apply_update(compact(copy))
    assert render(TEMPLATE, original)["story"] == "Today We talked. A lot."


def test_load_refuses_bytes_that_are_not_an_update() -> None:
    with pytest.raises(ValueError, match="not a valid Yjs update"):
        load(TEMPLATE, b"\x01\x02\x03")


def test_load_refuses_a_document_of_another_template() -> None:
    other = parse_template(
        {"id": "o", "title": "O", "fields": [{"id": "x", "label": "X", "kind": "long_text"}]}
    )
    with pytest.raises(LimitError) as caught:
        load(TEMPLATE, compact(new_document(other)))
    assert caught.value.field_path == "x"


def test_a_text_longer_than_its_max_length_is_refused() -> None:
    doc = new_document(TEMPLATE)
    text(fields(doc), "word").insert(0, "x" * 11)
    error = refusal(doc)
    assert error.field_path == "word"
    assert str(error) == "word: is 11 characters long, more than the limit of 10"


def test_text_length_counts_code_points_not_bytes() -> None:
    doc = new_document(TEMPLATE)
    text(fields(doc), "word").insert(0, "😀é" * 5)
    check_limits(TEMPLATE, doc)


def test_a_text_cell_in_a_row_is_limited_by_its_sub_field() -> None:
    doc = new_document(TEMPLATE)
    add_row(TEMPLATE, doc, "rows")
    add_row(TEMPLATE, doc, "rows")
    text(row(doc, 1), "what").insert(0, "sixsix")
    assert refusal(doc).field_path == "rows[1].what"


def test_a_group_beyond_max_rows_is_refused() -> None:
    doc = new_document(TEMPLATE)
    rows = fields(doc)["rows"]
    for _ in range(3):
        rows.append(Map({"what": Text()}))
    error = refusal(doc)
    assert error.field_path == "rows"
    assert "3 rows, more than the limit of 2" in error.message


def test_add_row_stops_at_max_rows() -> None:
    doc = new_document(TEMPLATE)
    assert add_row(TEMPLATE, doc, "rows") == 0
    assert add_row(TEMPLATE, doc, "rows") == 1
    with pytest.raises(LimitError, match="most rows"):
        add_row(TEMPLATE, doc, "rows")


def test_add_row_only_adds_to_groups() -> None:
    with pytest.raises(KeyError):
        add_row(TEMPLATE, new_document(TEMPLATE), "story")


@pytest.mark.parametrize("value", [11, -1, 2.5, True, "7", float("nan")])
def test_a_scale_outside_whole_numbers_from_0_to_10_is_refused(value: object) -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["mood"] = value
    assert refusal(doc).field_path == "mood"


@pytest.mark.parametrize("value", [0, 10, 7.0, None])
def test_a_scale_accepts_whole_numbers_and_null(value: object) -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["mood"] = value
    check_limits(TEMPLATE, doc)
    assert render(TEMPLATE, doc)["mood"] == value


def test_a_scale_in_a_row_is_checked_too() -> None:
    doc = new_document(TEMPLATE)
    add_row(TEMPLATE, doc, "rows")
    row(doc, 0)["how_much"] = 12
    assert refusal(doc).field_path == "rows[0].how_much"


@pytest.mark.parametrize(("key", "value"), [("who", "nobody"), ("who", 1), ("day", "tomorrow")])
def test_a_choice_that_is_not_an_option_or_a_bad_date_is_refused(key: str, value: object) -> None:
    doc = new_document(TEMPLATE)
    fields(doc)[key] = value
    assert refusal(doc).field_path == key


def test_an_impossible_date_is_refused() -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["day"] = "2026-02-30"
    assert "YYYY-MM-DD" in refusal(doc).message


def test_a_checklist_only_holds_its_options_as_booleans() -> None:
    doc = new_document(TEMPLATE)
    values = fields(doc)["values"]
    values["D"] = True
    assert "unknown option 'D'" in refusal(doc).message
    del values["D"]
    values["A"] = "yes"
    assert refusal(doc).field_path == "values"


def test_replacing_a_shared_text_with_a_plain_value_is_refused() -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["story"] = "flattened"
    error = refusal(doc)
    assert (error.field_path, error.message) == ("story", "is not a shared text")


def test_a_row_without_its_shared_text_is_refused() -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["rows"].append(Map({"how_much": 2}))
    assert refusal(doc).field_path == "rows[0].what"


def test_entries_the_template_does_not_have_are_refused() -> None:
    doc = new_document(TEMPLATE)
    fields(doc)["extra"] = "x"
    assert refusal(doc).field_path == "extra"
    del fields(doc)["extra"]
    add_row(TEMPLATE, doc, "rows")
    row(doc, 0)["extra"] = 1
    assert refusal(doc).field_path == "rows[0].extra"


def test_a_second_root_is_refused() -> None:
    doc = new_document(TEMPLATE)
    doc["notes"] = Text("sneaky")
    error = refusal(doc)
    assert error.field_path == "document"
    assert "notes" in error.message


def test_a_document_larger_than_its_limit_is_refused() -> None:
    doc = filled()
    with pytest.raises(LimitError) as caught:
        check_limits(TEMPLATE, doc, limit=len(compact(doc)) - 1)
    assert caught.value.field_path == "document"
    assert "more than the limit" in caught.value.message
    check_limits(TEMPLATE, doc, limit=len(compact(doc)))
    assert DOCUMENT_LIMIT == 256 * 1024


def test_render_shows_misshapen_entries_as_empty() -> None:
    doc = new_document(TEMPLATE)
    root = fields(doc)
    root["story"] = "flattened"
    root["mood"] = 99
    root["values"] = "A"
    root["rows"] = 3
    rendered = render(TEMPLATE, doc)
    assert (rendered["story"], rendered["mood"], rendered["values"], rendered["rows"]) == (
        "",
        None,
        [],
        [],
    )
