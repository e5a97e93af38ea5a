"""The OpenAPI 3.1 description of ``/api/v1``, served at ``/api/v1/openapi.json``.

Kept true by ``tests/server/test_api_contract.py``: the document is validated, and
schemathesis runs generated requests against a live server and checks every answer
against it.  Change the two together.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from server.problems import PROBLEM_JSON, PROBLEMS, TYPE_PREFIX

JSON = "application/json"
Schema = dict[str, Any]

EXAMPLE_SLUG = "sam-rivera"
MAX_ID = 2**31 - 1


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Schema], *required: str) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_INSTANT: Schema = {"type": "string", "format": "date-time", "example": "2026-03-04T15:00:00Z"}
_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "description": "An RFC 9457 problem: `code` is stable; `title`, `detail` are for people.",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "code": {"type": "string"},
            "request_id": {"type": "string"},
            "errors": {
                "description": "For `validation-failed`: one entry per bad field.",
                "type": "array",
                "items": _object(
                    {"field": {"type": "string"}, "message": {"type": "string"}},
                    "field",
                    "message",
                ),
            },
            "nearest": {
                "description": "For `slot-taken`: the nearest free times, if any.",
                "type": "array",
                "items": _ref("Slot"),
            },
            "contact": {"description": "For `too-late`: whom to contact.", "type": "string"},
            "cutoff": {**_INSTANT, "description": "For `too-late`: the last online change."},
        },
        "required": ["type", "title", "status", "detail", "code"],
    },
    "Slot": _object({"start": _INSTANT, "end": _INSTANT}, "start", "end"),
    "SessionType": _object(
        {
            "id": _ID,
            "name": {"type": "string"},
            "duration_minutes": {"type": "integer"},
            "price_text": {"type": "string"},
            "min_notice_minutes": {"type": "integer"},
            "horizon_days": {"type": "integer"},
        },
        "id",
        "name",
        "duration_minutes",
        "price_text",
        "min_notice_minutes",
        "horizon_days",
    ),
    "SessionTypes": _object(
        {
            "therapist": _object(
                {
                    "slug": {"type": "string"},
                    "name": {"type": "string"},
                    "timezone": {"type": "string"},
                },
                "slug",
                "name",
                "timezone",
            ),
            "session_types": {"type": "array", "items": _ref("SessionType")},
        },
        "therapist",
        "session_types",
    ),
    "Slots": _object(
        {
            "session_type": _ID,
            "timezone": {"type": "string", "description": "The therapist's IANA zone."},
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "slots": {"type": "array", "items": _ref("Slot")},
        },
        "session_type",
        "timezone",
        "from",
        "to",
        "slots",
    ),
    "BookingRequest": _object(
        {
            "session_type": _ID,
            "start": {**_INSTANT, "description": "One of the free slots' starts."},
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "email": {"type": "string", "format": "email", "maxLength": 254},
            "phone": {
                "type": ["string", "null"],
                "maxLength": 40,
                "pattern": "^[0-9 +()-]*$",
            },
            "note": {
                "type": ["string", "null"],
                "maxLength": 2000,
                "description": "What brings the client; seen by the therapist only.",
            },
            "timezone": {
                "type": "string",
                "description": "The client's IANA time zone.",
                "example": "Europe/Berlin",
            },
            "consent_telehealth": {"const": True},
            "consent_privacy": {"const": True},
        },
        "session_type",
        "start",
        "name",
        "email",
        "timezone",
        "consent_telehealth",
        "consent_privacy",
    ),
    "Booking": _object(
        {
            "appointment": _ID,
            "start": _INSTANT,
            "end": _INSTANT,
            "manage_url": {
                "type": "string",
                "format": "uri",
                "description": "The client's link to cancel or reschedule.",
            },
        },
        "appointment",
        "start",
        "end",
        "manage_url",
    ),
    "CancelRequest": {**_object({}), "description": "An empty object."},
    "Cancelled": _object(
        {"appointment": _ID, "status": {"const": "cancelled"}}, "appointment", "status"
    ),
    "RescheduleRequest": _object({"start": _INSTANT}, "start"),
}


def _problem(status: int) -> Schema:
    codes = sorted(code for code, (code_status, _) in PROBLEMS.items() if code_status == status)
    return {
        "description": "; ".join(PROBLEMS[code][1] for code in codes) + f" ({', '.join(codes)}).",
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }


def _ok(status: int, schema: str, description: str) -> dict[str, Schema]:
    return {str(status): {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(status): _problem(status) for status in statuses}


def _body(schema: str) -> Schema:
    return {"required": True, "content": {JSON: {"schema": _ref(schema)}}}


_SLUG: Schema = {
    "name": "slug",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "maxLength": 64},
    "example": EXAMPLE_SLUG,
}
_TOKEN: Schema = {
    "name": "token",
    "in": "path",
    "required": True,
    "description": "The token of the client's manage link.",
    "schema": {"type": "string", "maxLength": 128},
}
_DATE_PARAM: Schema = {"type": "string", "format": "date"}

PATHS: dict[str, Schema] = {
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/therapists/{slug}/session-types": {
        "get": {
            "operationId": "listSessionTypes",
            "summary": "The therapist's public session types",
            "parameters": [_SLUG],
            "responses": {**_ok(200, "SessionTypes", "The session types."), **_errors(404)},
        }
    },
    "/therapists/{slug}/slots": {
        "get": {
            "operationId": "listSlots",
            "summary": "Free slots of one session type",
            "description": "Dates are the therapist's local dates, `from` to `to` inclusive "
            "(at most 62 days; by default two weeks from today).",
            "parameters": [
                _SLUG,
                {
                    "name": "session_type",
                    "in": "query",
                    "required": True,
                    "schema": _ID,
                    "example": 1,
                },
                {"name": "from", "in": "query", "required": False, "schema": _DATE_PARAM},
                {"name": "to", "in": "query", "required": False, "schema": _DATE_PARAM},
            ],
            "responses": {**_ok(200, "Slots", "The free slots."), **_errors(404, 422)},
        }
    },
    "/therapists/{slug}/bookings": {
        "post": {
            "operationId": "book",
            "summary": "Book a free slot",
            "description": "The join link is e-mailed to the client, never returned here.",
            "parameters": [_SLUG],
            "requestBody": _body("BookingRequest"),
            "responses": {
                **_ok(201, "Booking", "Booked."),
                **_errors(400, 404, 409, 413, 415, 422),
            },
        }
    },
    "/manage/{token}/cancel": {
        "post": {
            "operationId": "cancel",
            "summary": "Cancel the appointment (before the therapist's cutoff)",
            "parameters": [_TOKEN],
            "requestBody": _body("CancelRequest"),
            "responses": {
                **_ok(200, "Cancelled", "Cancelled."),
                **_errors(400, 404, 409, 410, 413, 415, 422),
            },
        }
    },
    "/manage/{token}/reschedule": {
        "post": {
            "operationId": "reschedule",
            "summary": "Move the appointment to another free slot (before the cutoff)",
            "description": "The old manage link stops working; the answer carries the new one.",
            "parameters": [_TOKEN],
            "requestBody": _body("RescheduleRequest"),
            "responses": {
                **_ok(200, "Booking", "Moved."),
                **_errors(400, 404, 409, 410, 413, 415, 422),
            },
        }
    },
}


@functools.cache
def _document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Alcove booking API",
            "version": "1.0.0",
            "description": "Public booking for integrations. Errors are RFC 9457 problems "
            f"(`application/problem+json`) whose `type` is `{TYPE_PREFIX}<code>`.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS},
    }


def document() -> Schema:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_document())
