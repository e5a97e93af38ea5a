"""Translations: gettext catalogs under ``web/locale``, chosen per request.

A language is added by adding ``web/locale/<lang>/LC_MESSAGES/messages.po``;
catalogs are compiled in memory at start-up, so there is no build step.
"""

from __future__ import annotations

import contextvars
import io
from collections.abc import Iterable
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent.parent / "web" / "locale"
DEFAULT_LOCALE = "en"


class Catalogs:
    """All shipped catalogs, and negotiation of one against ``Accept-Language``."""

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self._translations: dict[str, NullTranslations] = {}
        for po in sorted(locale_dir.glob("*/LC_MESSAGES/messages.po")):
            lang = po.parent.parent.name
            with po.open("rb") as handle:
                catalog = read_po(handle, locale=lang)
            buffer = io.BytesIO()
            write_mo(buffer, catalog)
            buffer.seek(0)
            self._translations[lang] = Translations(buffer)
        self._translations.setdefault(DEFAULT_LOCALE, NullTranslations())

    @property
    def languages(self) -> list[str]:
        return sorted(self._translations)

    def get(self, lang: str) -> NullTranslations:
        return self._translations.get(lang, self._translations[DEFAULT_LOCALE])

    def negotiate(self, accept_language: str | None) -> str:
        # Catalog directories are named like ``pt_BR``; the header says ``pt-BR``.
        wanted = [lang.replace("-", "_") for lang in _parse_accept_language(accept_language or "")]
        chosen = Locale.negotiate(wanted, self.languages) if wanted else None
        return str(chosen) if chosen else DEFAULT_LOCALE


def _parse_accept_language(header: str) -> Iterable[str]:
    weighted: list[tuple[float, str]] = []
    for part in header.split(",")[:20]:
        lang, _, params = part.strip().partition(";")
        lang = lang.strip()
        if not lang or lang == "*" or len(lang) > 35:
            continue
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        try:
            Locale.parse(lang, sep="-")
        except (ValueError, UnknownLocaleError):
            continue
        weighted.append((quality, lang))
    return (lang for _, lang in sorted(weighted, key=lambda item: -item[0]))


_current: contextvars.ContextVar[tuple[str, NullTranslations]] = contextvars.ContextVar(
    "alcove_translations", default=(DEFAULT_LOCALE, NullTranslations())
)


def activate(
    lang: str, translations: NullTranslations
) -> contextvars.Token[tuple[str, NullTranslations]]:
    return _current.set((lang, translations))


def deactivate(token: contextvars.Token[tuple[str, NullTranslations]]) -> None:
    _current.reset(token)


def current_locale() -> str:
    return _current.get()[0]


def gettext(message: str) -> str:
    return _current.get()[1].gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return _current.get()[1].ngettext(singular, plural, n)


_ = gettext
