"""The built-in worksheets are valid, complete, and render to the expected empty shape."""

from __future__ import annotations

import pytest

from server.worksheets import (
    BUILTIN_TEMPLATES,
    builtin_template,
    check_limits,
    new_document,
    parse_template,
    render,
    template_to_json,
)
from server.worksheets.document import Rendered
from server.worksheets.templates import GroupField, ScaleField, Template, TextField

EMPTY: dict[str, dict[str, Rendered]] = {
    "cbt-thought-record": {"entries": []},
    "relationship-pattern-log": {"moments": [], "patterns_noticed": ""},
    "i-statement-practice": {"statements": [], "how_it_went": ""},
    "goals-and-values": {"values": [], "other_values": "", "goals": []},
    "weekly-check-in": {
        "week_of": None,
        "mood": None,
        "connection": None,
        "stress": None,
        "sleep": None,
        "went_well": "",
        "was_hard": "",
        "bring_to_session": "",
    },
}


def ids(template: Template) -> str:
    return template.id


def test_there_are_at_least_five_with_distinct_ids() -> None:
    assert len(BUILTIN_TEMPLATES) >= 5
    assert len({t.id for t in BUILTIN_TEMPLATES}) == len(BUILTIN_TEMPLATES)
    assert set(EMPTY) <= {t.id for t in BUILTIN_TEMPLATES}


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=ids)
def test_every_builtin_template_validates_through_its_json(template: Template) -> None:
    assert parse_template(template_to_json(template)) == template


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=ids)
def test_every_builtin_template_has_warm_instructions(template: Template) -> None:
    assert len(template.instructions) >= 150
    assert "you" in template.instructions.lower()


@pytest.mark.parametrize("template", BUILTIN_TEMPLATES, ids=ids)
def test_every_builtin_template_renders_to_its_expected_empty_shape(template: Template) -> None:
    doc = new_document(template)
    check_limits(template, doc)
    assert render(template, doc) == EMPTY[template.id]


def row_ids(template_id: str, group_id: str) -> list[str]:
    group = builtin_template(template_id).field(group_id)
    assert isinstance(group, GroupField)
    return [sub.id for sub in group.fields]


def test_the_thought_record_rows_walk_through_a_moment() -> None:
    assert row_ids("cbt-thought-record", "entries")[:7] == [
        "situation",
        "automatic_thought",
        "feeling",
        "intensity",
        "evidence_for",
        "evidence_against",
        "balanced_thought",
    ]
    group = builtin_template("cbt-thought-record").field("entries")
    assert isinstance(group, GroupField)
    assert isinstance(group.fields[3], ScaleField)


def test_the_pattern_log_asks_about_both_partners() -> None:
    assert {
        "trigger",
        "what_i_felt",
        "what_i_did",
        "what_partner_did",
        "what_i_wished_for",
        "next_time",
    } <= set(row_ids("relationship-pattern-log", "moments"))


def test_the_i_statement_rows_build_a_sentence() -> None:
    assert row_ids("i-statement-practice", "statements") == [
        "situation",
        "i_feel",
        "when",
        "because",
        "what_id_like",
    ]


def test_goals_and_values_has_values_three_goals_and_importance() -> None:
    template = builtin_template("goals-and-values")
    assert template.field("values").kind == "checklist"
    goals = template.field("goals")
    assert isinstance(goals, GroupField)
    assert goals.max_rows == 3
    assert {"goal", "first_step", "importance"} <= {sub.id for sub in goals.fields}


def test_the_weekly_check_in_has_four_scales_three_texts_and_a_date() -> None:
    template = builtin_template("weekly-check-in")
    kinds = {field.id: field.kind for field in template.fields}
    assert [k for k, kind in kinds.items() if kind == "scale"] == [
        "mood",
        "connection",
        "stress",
        "sleep",
    ]
    assert [k for k, kind in kinds.items() if kind == "long_text"] == [
        "went_well",
        "was_hard",
        "bring_to_session",
    ]
    assert [k for k, kind in kinds.items() if kind == "date"] == ["week_of"]
    assert all(
        isinstance(f, TextField) and f.max_length == 5000
        for f in template.fields
        if f.kind == "long_text"
    )


def test_an_unknown_builtin_id_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        builtin_template("nope")
