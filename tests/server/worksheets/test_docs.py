"""docs/WORKSHEETS.md and the template parser describe the same schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.worksheets.templates import KINDS, parse_template_json

DOC = Path(__file__).resolve().parents[3] / "docs" / "WORKSHEETS.md"
TEXT = DOC.read_text(encoding="utf-8")
EXAMPLES = re.findall(r"^```json\n(.*?)^```", TEXT, flags=re.DOTALL | re.MULTILINE)
KIND_SECTIONS = re.findall(r"^### `([a-z_]+)`$", TEXT, flags=re.MULTILINE)


def _section(kind: str) -> str:
    start = TEXT.index(f"\n### `{kind}`\n")
    end = TEXT.find("\n##", start + 1)
    return TEXT[start:end]


def test_the_document_has_an_example_per_kind() -> None:
    assert len(EXAMPLES) >= len(KINDS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.split('"id": "')[1].split('"')[0])
def test_every_json_example_is_a_valid_template(example: str) -> None:
    parse_template_json(example)


def test_every_kind_has_its_own_section_and_no_other_does() -> None:
    assert sorted(KIND_SECTIONS) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_section_shows_a_template_using_that_kind(kind: str) -> None:
    examples = re.findall(r"^```json\n(.*?)^```", _section(kind), flags=re.DOTALL | re.MULTILINE)
    assert len(examples) == 1
    template = parse_template_json(examples[0])
    assert kind in {field.kind for field in template.fields}
