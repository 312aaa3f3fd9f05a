"""Bulk registration of cases from a CSV file: valid rows kept, each refused row reported.

The file is read and checked a batch at a time; each batch's valid rows are written with
their audit events in one transaction, so a crash leaves whole batches and never half a case.
Running the same file again refuses the rows already registered and adds nothing twice.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TextIO

from sqlalchemy.orm import Session

from broker.cases.service import (
    Actor,
    CaseError,
    CaseInput,
    CaseRegistry,
    Registries,
    check_input,
    today,
)

COLUMNS = ("reference", "person", "capacity", "purposes", "starts_on")
OPTIONAL = ("ends_on", "officers", "teams")
#: Lists inside a cell are separated by semicolons: ``benefit-eligibility;child-protection``.
LIST_SEPARATOR = ";"
MAX_FIELD = 1000
BATCH = 1000


class ImportFileError(ValueError):
    """The file as a whole cannot be read: nothing was imported."""


@dataclass(frozen=True)
class Rejection:
    line: int
    reference: str
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    registered: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def _split(cell: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (cell or "").split(LIST_SEPARATOR) if part.strip())


def _date(cell: str | None, column: str) -> date | None:
    if not cell or not cell.strip():
        return None
    try:
        return date.fromisoformat(cell.strip())
    except ValueError:
        raise CaseError(
            422, "Invalid date", f"{column} {cell!r} is not a date (YYYY-MM-DD)."
        ) from None


def parse_row(row: dict[str, str | None]) -> CaseInput:
    """A CSV row as a registration; ``CaseError`` names what is wrong with it."""
    if None in row:
        raise CaseError(422, "Malformed row", "The row has more cells than the header.")
    if any(value is None for value in row.values()):
        raise CaseError(422, "Malformed row", "The row has fewer cells than the header.")
    if any(len(value or "") > MAX_FIELD for value in row.values()):
        raise CaseError(422, "Malformed row", f"A cell is longer than {MAX_FIELD} characters.")
    scheme, colon, value = (row.get("person") or "").partition(":")
    if not colon or not scheme or not value:
        raise CaseError(422, "Invalid person", "person is SCHEME:VALUE, e.g. client-no:SS-000123.")
    starts_on = _date(row.get("starts_on"), "starts_on")
    if starts_on is None:
        raise CaseError(422, "Missing start date", "starts_on is required.")
    return CaseInput(
        reference=row.get("reference") or "",
        scheme=scheme,
        value=value,
        capacity=(row.get("capacity") or "").strip(),
        purposes=_split(row.get("purposes")),
        starts_on=starts_on,
        ends_on=_date(row.get("ends_on"), "ends_on"),
        officers=_split(row.get("officers")),
        teams=_split(row.get("teams")),
    )


def _reader(handle: TextIO) -> Iterator[tuple[int, dict[str, str | None]]]:
    reader = csv.DictReader(handle, strict=True)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"the header is not valid CSV: {exc}") from None
    if not header:
        raise ImportFileError("the file is empty: it needs a header row")
    missing = [c for c in COLUMNS if c not in header]
    unknown = [c for c in header if c not in COLUMNS + OPTIONAL]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            parts.append(f"unknown column(s) {', '.join(map(repr, unknown))}")
        expected = ", ".join(COLUMNS + OPTIONAL)
        raise ImportFileError(f"{'; '.join(parts)} (the columns are: {expected})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: not valid CSV: {exc}") from None
        yield reader.line_num, row


def import_cases(
    session: Session,
    agency: str,
    handle: TextIO,
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    batch: int = BATCH,
) -> ImportReport:
    """Register the file's cases for ``agency``, committing a batch at a time."""
    now = now or datetime.now(UTC)
    on = today(now)
    registry = CaseRegistry(session, Actor(agency, channel="cli"), now=now)
    registries = Registries.load(session, agency)
    seen: set[str] = set()
    report = ImportReport()
    pending: list[tuple[int, dict[str, str | None]]] = []

    def flush() -> None:
        parsed: list[tuple[int, CaseInput]] = []
        for line, row in pending:
            try:
                parsed.append((line, parse_row(row)))
            except CaseError as exc:
                report.rejected.append(Rejection(line, row.get("reference") or "", exc.detail))
        registries.resolve_persons(session, agency, [(i.scheme, i.value) for _, i in parsed])
        known = registry.registered([i.reference for _, i in parsed])
        valid: list[tuple[CaseInput, uuid.UUID]] = []
        for line, item in parsed:
            try:
                person_id = check_input(item, registries, on)
                if item.reference in known or item.reference in seen:
                    raise CaseError(409, "Duplicate", "the reference is already registered")
            except CaseError as exc:
                report.rejected.append(Rejection(line, item.reference, exc.detail))
                continue
            seen.add(item.reference)
            valid.append((item, person_id))
        registry.add_checked(valid)
        session.commit()
        report.registered += len(valid)
        if on_progress is not None:
            on_progress(len(pending))
        pending.clear()

    for line, row in _reader(handle):
        report.rows += 1
        pending.append((line, row))
        if len(pending) >= batch:
            flush()
    if pending:
        flush()
    report.rejected.sort(key=lambda r: r.line)
    return report


def open_text(path: Path) -> TextIO:
    """The file as UTF-8 text (a byte-order mark is allowed); other encodings are refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file is not UTF-8 text (byte {exc.start})") from None
    return io.StringIO(text, newline="")


def write_rejections(report: ImportReport, handle: TextIO) -> None:
    writer = csv.writer(handle)
    writer.writerow(["line", "reference", "reason"])
    for rejection in report.rejected:
        writer.writerow([rejection.line, rejection.reference, rejection.reason])
