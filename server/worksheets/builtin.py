"""The worksheets Alcove ships with, written for individual therapy about a relationship.

Each is plain template JSON (docs/WORKSHEETS.md), checked by `parse_template` when this
module is imported, so a mistake here fails loudly at start-up and in the tests.
"""

from __future__ import annotations

from typing import Any

from server.worksheets.templates import Template, parse_template

_THOUGHT_RECORD: dict[str, Any] = {
    "id": "cbt-thought-record",
    "title": "Thought record",
    "instructions": (
        "When a moment with your partner leaves you upset, it can help to slow it down and "
        "look at it piece by piece. Pick a moment from this week and fill in one row for it. "
        "There are no right or wrong answers, and you don't need to finish every box: even "
        "noticing the thought that went through your mind is a real step. We'll look at it "
        "together in our next session."
    ),
    "fields": [
        {
            "id": "entries",
            "label": "Moments this week",
            "kind": "group",
            "max_rows": 10,
            "fields": [
                {
                    "id": "situation",
                    "label": "Situation",
                    "kind": "long_text",
                    "max_length": 2000,
                    "help": "Where were you, who was there, what happened? Just the facts.",
                },
                {
                    "id": "automatic_thought",
                    "label": "Automatic thought",
                    "kind": "long_text",
                    "max_length": 2000,
                    "help": "What went through your mind in that moment?",
                },
                {
                    "id": "feeling",
                    "label": "Feeling",
                    "kind": "short_text",
                    "help": "For example: hurt, anxious, angry, lonely, ashamed.",
                },
                {
                    "id": "intensity",
                    "label": "How strong was the feeling?",
                    "kind": "scale",
                    "min_label": "barely there",
                    "max_label": "overwhelming",
                },
                {
                    "id": "evidence_for",
                    "label": "What supports the thought",
                    "kind": "long_text",
                    "max_length": 2000,
                },
                {
                    "id": "evidence_against",
                    "label": "What doesn't fit the thought",
                    "kind": "long_text",
                    "max_length": 2000,
                    "help": "What would a kind friend point out? Has it been different before?",
                },
                {
                    "id": "balanced_thought",
                    "label": "A more balanced thought",
                    "kind": "long_text",
                    "max_length": 2000,
                    "help": "A thought that takes all of it into account, and feels believable.",
                },
                {
                    "id": "intensity_after",
                    "label": "How strong is the feeling now?",
                    "kind": "scale",
                    "min_label": "barely there",
                    "max_label": "overwhelming",
                },
            ],
        }
    ],
}

_PATTERN_LOG: dict[str, Any] = {
    "id": "relationship-pattern-log",
    "title": "Relationship pattern log",
    "instructions": (
        "Many couples find themselves in the same kind of argument again and again. Each time "
        "something between you and your partner stings this week, jot it down here, as soon "
        "as you can. Be honest and gentle with yourself: this is about understanding the "
        "dance you both get caught in, not about deciding who is to blame."
    ),
    "fields": [
        {
            "id": "moments",
            "label": "What happened",
            "kind": "group",
            "max_rows": 20,
            "fields": [
                {"id": "when", "label": "When", "kind": "date"},
                {
                    "id": "trigger",
                    "label": "What set it off",
                    "kind": "long_text",
                    "max_length": 2000,
                },
                {"id": "what_i_felt", "label": "What I felt", "kind": "long_text"},
                {"id": "what_i_did", "label": "What I did", "kind": "long_text"},
                {"id": "what_partner_did", "label": "What my partner did", "kind": "long_text"},
                {
                    "id": "what_i_wished_for",
                    "label": "What I wished for",
                    "kind": "long_text",
                    "help": "Underneath it all, what did you long for in that moment?",
                },
                {
                    "id": "next_time",
                    "label": "What I could try next time",
                    "kind": "long_text",
                },
            ],
        },
        {
            "id": "patterns_noticed",
            "label": "Patterns I'm starting to notice",
            "kind": "long_text",
        },
    ],
}

_I_STATEMENTS: dict[str, Any] = {
    "id": "i-statement-practice",
    "title": "“I” statements",
    "instructions": (
        "An “I” statement shares how you feel and what you need, without blaming: “I feel "
        "lonely when we're on our phones at dinner, because our evenings are when I feel "
        "closest to you. What I'd like is for us to put them away while we eat.” Think of a "
        "few situations, write one statement for each, and try saying one out loud this week. "
        "It may feel awkward at first; that's completely normal."
    ),
    "fields": [
        {
            "id": "statements",
            "label": "My statements",
            "kind": "group",
            "max_rows": 10,
            "fields": [
                {"id": "situation", "label": "The situation", "kind": "long_text"},
                {
                    "id": "i_feel",
                    "label": "I feel …",
                    "kind": "short_text",
                    "help": "Name a feeling, like hurt or worried, not a thought about them.",
                },
                {"id": "when", "label": "when …", "kind": "short_text", "max_length": 500},
                {"id": "because", "label": "because …", "kind": "short_text", "max_length": 500},
                {
                    "id": "what_id_like",
                    "label": "What I'd like is …",
                    "kind": "short_text",
                    "max_length": 500,
                    "help": "Something specific and doable your partner could say yes to.",
                },
            ],
        },
        {
            "id": "how_it_went",
            "label": "If you tried one: how did it go?",
            "kind": "long_text",
        },
    ],
}

_GOALS_AND_VALUES: dict[str, Any] = {
    "id": "goals-and-values",
    "title": "Goals and values",
    "instructions": (
        "Values are the things that matter most to you in how you love and live; goals are "
        "steps in their direction. Start by ticking the values that feel truest for you in "
        "your relationship right now. Then choose up to three goals, each with a first step "
        "small enough to take this week."
    ),
    "fields": [
        {
            "id": "values",
            "label": "What matters most to me in my relationship",
            "kind": "checklist",
            "options": [
                "Honesty",
                "Trust",
                "Kindness",
                "Respect",
                "Closeness and intimacy",
                "Fun and playfulness",
                "Independence",
                "Fairness",
                "Commitment",
                "Growing together",
                "Family",
                "Feeling safe",
            ],
        },
        {
            "id": "other_values",
            "label": "Other values, in my own words",
            "kind": "short_text",
            "max_length": 500,
        },
        {
            "id": "goals",
            "label": "My goals",
            "kind": "group",
            "max_rows": 3,
            "fields": [
                {"id": "goal", "label": "Goal", "kind": "short_text", "max_length": 300},
                {"id": "why", "label": "Why it matters to me", "kind": "long_text"},
                {"id": "first_step", "label": "My first step", "kind": "short_text"},
                {
                    "id": "importance",
                    "label": "How important is this to me?",
                    "kind": "scale",
                    "min_label": "a little",
                    "max_label": "very",
                },
            ],
        },
    ],
}

_CHECK_IN: dict[str, Any] = {
    "id": "weekly-check-in",
    "title": "Weekly check-in",
    "instructions": (
        "A few minutes to look back on your week before we meet. Go with your first "
        "instinct on the scales: 0 is the lowest, 10 the highest. Then write as much or as "
        "little as you like. This is your space to notice how you've been."
    ),
    "fields": [
        {"id": "week_of", "label": "Week of", "kind": "date"},
        {
            "id": "mood",
            "label": "My mood overall",
            "kind": "scale",
            "min_label": "very low",
            "max_label": "very good",
        },
        {
            "id": "connection",
            "label": "How connected I felt with my partner",
            "kind": "scale",
            "min_label": "distant",
            "max_label": "very close",
        },
        {
            "id": "stress",
            "label": "My stress",
            "kind": "scale",
            "min_label": "calm",
            "max_label": "very stressed",
        },
        {
            "id": "sleep",
            "label": "How well I slept",
            "kind": "scale",
            "min_label": "badly",
            "max_label": "very well",
        },
        {"id": "went_well", "label": "What went well", "kind": "long_text"},
        {"id": "was_hard", "label": "What was hard", "kind": "long_text"},
        {
            "id": "bring_to_session",
            "label": "What I'd like to bring to our next session",
            "kind": "long_text",
        },
    ],
}

BUILTIN_TEMPLATES: tuple[Template, ...] = tuple(
    parse_template(data)
    for data in (_THOUGHT_RECORD, _PATTERN_LOG, _I_STATEMENTS, _GOALS_AND_VALUES, _CHECK_IN)
)


def builtin_template(template_id: str) -> Template:
    """The built-in template with this id; `KeyError` if there is none."""
    for template in BUILTIN_TEMPLATES:
        if template.id == template_id:
            return template
    raise KeyError(template_id)
