"""Shared therapy worksheets: templates, their CRDT documents, and the Yjs sync protocol.

See docs/WORKSHEETS.md. Nothing here does I/O: the websocket, the database and the pages
build on these pieces.
"""

from server.worksheets.builtin import BUILTIN_TEMPLATES, builtin_template
from server.worksheets.document import (
    DOCUMENT_LIMIT,
    LimitError,
    add_row,
    check_limits,
    compact,
    load,
    new_document,
    render,
)
from server.worksheets.sync import Reply, SharedWorksheet
from server.worksheets.sync_messages import SyncError
from server.worksheets.templates import (
    Template,
    TemplateError,
    parse_template,
    parse_template_json,
    template_to_json,
)

__all__ = [
    "BUILTIN_TEMPLATES",
    "DOCUMENT_LIMIT",
    "LimitError",
    "Reply",
    "SharedWorksheet",
    "SyncError",
    "Template",
    "TemplateError",
    "add_row",
    "builtin_template",
    "check_limits",
    "compact",
    "load",
    "new_document",
    "parse_template",
    "parse_template_json",
    "render",
    "template_to_json",
]
