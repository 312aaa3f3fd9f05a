"""A casebroker source adapter serving records from CSV files, one file per data category."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

from adapters import AdapterConfigError, Health, Record, SourceUnavailable

__all__ = ["CsvAdapter"]

_KEYS = {"files", "identifier_column", "identifier_scheme"}

Rows = dict[str, tuple[dict[str, str | None], ...]]


class CsvAdapter:
    """Reads each category's file once, at start-up; a fetch is then a dictionary look-up.

    Nothing changes after construction, so concurrent fetches need no lock, and no fetch can
    block: the timeout is always met.
    """

    def __init__(
        self, source_id: str, config: Mapping[str, Any], categories: Mapping[str, Sequence[str]]
    ) -> None:
        self._prefix = f"source {source_id!r} (csv adapter)"
        unknown = sorted(set(config) - _KEYS)
        if unknown:
            raise self._error(f"unknown config key(s) {', '.join(unknown)}")
        files = config.get("files")
        column = config.get("identifier_column")
        if not isinstance(files, Mapping):
            raise self._error("files must map each category to a CSV file")
        if not isinstance(column, str) or not column:
            raise self._error("identifier_column must name the column holding the identifier")
        missing = sorted(set(categories) - set(files))
        if missing:
            raise self._error(f"files has no entry for category {', '.join(missing)}")
        self._paths = {category: str(files[category]) for category in categories}
        self._rows = {
            category: self._load(category, self._paths[category], column, set(fields))
            for category, fields in categories.items()
        }
        self._closed = False

    def _error(self, message: str) -> AdapterConfigError:
        return AdapterConfigError(f"{self._prefix}: {message}")

    def _load(self, category: str, path: str, column: str, fields: set[str]) -> Rows:
        """The file's rows grouped by identifier, each cut down to the category's fields."""
        try:
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                header = set(reader.fieldnames or ())
                if column not in header:
                    raise self._error(f"the file for {category!r} has no column {column!r}")
                kept = sorted(fields & header)
                if not kept:
                    raise self._error(f"no column of the file for {category!r} is a field")
                grouped: dict[str, list[dict[str, str | None]]] = {}
                for row in reader:
                    record = {name: row[name] or None for name in kept}
                    grouped.setdefault(row[column], []).append(record)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise self._error(f"cannot read the file for {category!r}: {exc}") from None
        return {identifier: tuple(records) for identifier, records in grouped.items()}

    def fetch(self, category: str, identifier: str, timeout: float) -> list[Record]:
        """Copies of the rows whose identifier column equals ``identifier``."""
        if category not in self._rows:
            raise ValueError(f"this source does not provide category {category!r}")
        if not isinstance(identifier, str) or not identifier:
            raise ValueError("identifier must be a non-empty string")
        if self._closed:
            raise SourceUnavailable("adapter is closed")
        return [dict(record) for record in self._rows[category].get(identifier, ())]

    def health(self, timeout: float) -> Health:
        """Healthy while open and while every file it was started from is still there."""
        if self._closed:
            return Health(False, "adapter is closed")
        gone = sorted(c for c, path in self._paths.items() if not os.path.isfile(path))
        if gone:
            return Health(False, f"the file for {', '.join(gone)} is gone; restart to reload")
        return Health(True, f"{sum(len(rows) for rows in self._rows.values())} identifiers")

    def close(self) -> None:
        """Nothing to release; later fetches answer unavailable."""
        self._closed = True
