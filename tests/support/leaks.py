"""What the suite's log output must never hold: e-mail addresses, and the tokens and client
names the tests made.  ``conftest.py`` collects every log line of the run and checks it."""

from __future__ import annotations

import logging
import re

from server.logs import JsonFormatter, RequestIdFilter

#: Tokens and client names handed out by the test helpers, as the run goes.
SECRETS: set[str] = set()

#: Loggers of the tests' own stand-ins (the SMTP sink), which see addresses by design.
NOT_THE_APP = ("mail.log",)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


def remember(*values: str) -> None:
    """Note values that must not appear in any log line."""
    SECRETS.update(value for value in values if value)


class Collector(logging.Handler):
    """Keeps every record as the JSON line ``alcove serve`` would write."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.addFilter(RequestIdFilter())
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(NOT_THE_APP):
            return
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is still evidence
            self.lines.append(repr(record.__dict__))


def leaks(lines: list[str], secrets: set[str]) -> list[str]:
    """The lines holding an e-mail address or one of ``secrets``, each with what it held."""
    found: list[str] = []
    for line in lines:
        held = [match.group(0) for match in EMAIL.finditer(line)]
        held += [secret for secret in secrets if secret in line]
        if held:
            found.append(f"{', '.join(sorted(set(held)))}: {line[:300]}")
    return found
