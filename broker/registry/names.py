"""Display names of registry entries and people, in the reader's language.

The registry's own columns are English; other languages come from each row's ``labels``
(``{"fr": {"name": ..., "description": ...}}``) and fall back to English where a row has none.
Identifiers never reach a page: an entry that is gone shows its id rather than nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from broker.cases.models import CaseCapacity
from broker.models import Agency, DataCategory, Purpose
from identity.models import Client, Officer

#: The languages pages and notices are written in; registry labels may hold these.
LANGUAGES = ("en", "fr")


def label(row: Any, attribute: str, locale: str) -> str:
    """``row``'s ``attribute`` in ``locale``, or in English when it has no such label."""
    labels = getattr(row, "labels", None) or {}
    translated = (labels.get(locale) or {}).get(attribute) if locale != "en" else None
    return translated or getattr(row, attribute)


class Names:
    """Names for one reader: each row is read once, whatever the number of calls."""

    def __init__(self, session: Session, locale: str = "en") -> None:
        self.session = session
        self.locale = locale if locale in LANGUAGES else "en"
        self._rows: dict[tuple[type, Any], Any] = {}

    def _row(self, model: type, key: Any) -> Any:
        if (model, key) not in self._rows:
            self._rows[(model, key)] = self.session.get(model, key)
        return self._rows[(model, key)]

    def _label(self, model: type, key: Any, attribute: str, locale: str | None) -> str:
        if key is None:
            return ""
        row = self._row(model, key)
        return label(row, attribute, locale or self.locale) if row is not None else str(key)

    def agency(self, key: str | None, locale: str | None = None) -> str:
        return self._label(Agency, key, "name", locale)

    def purpose(self, key: str | None, locale: str | None = None) -> str:
        return self._label(Purpose, key, "name", locale)

    def purpose_description(self, key: str | None, locale: str | None = None) -> str:
        return self._label(Purpose, key, "description", locale)

    def category(self, key: str | None, locale: str | None = None) -> str:
        return self._label(DataCategory, key, "name", locale)

    def capacity(self, key: str | None, locale: str | None = None) -> str:
        return self._label(CaseCapacity, key, "name", locale)

    def officer(self, key: uuid.UUID | None) -> str:
        return self._label(Officer, key, "display_name", "en")

    def client(self, key: str | None) -> str:
        return self._label(Client, key, "name", "en")
