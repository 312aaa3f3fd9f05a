"""Applying a registry file: what changes, written with its audit events, or nothing at all.

An entry in the file is created when its id is new and brought to the file's values when it
exists; an entry the file does not name is left as it is (agencies are suspended and sources
disabled through ``status``, never deleted: audit events and consents keep referring to them).
Each created or changed entry is one ``registry.changed`` event naming the attributes that
changed, never their values: a source's configuration may name hosts and accounts. Every
source's adapter is built from its new configuration before anything is written, so a file
that would break lookups is refused whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

import audit
from adapters import AdapterConfigError
from adapters.registry import AdapterLoadError, build_adapter
from broker.cases.models import CaseCapacity
from broker.models import Agency, DataCategory, Purpose, Source, SourceCategory
from broker.registry.document import KINDS, RegistryFileError, load

#: For each kind: the model, and the document keys that map one to one to its columns.
_COLUMNS: dict[str, tuple[type, dict[str, str]]] = {
    "agencies": (Agency, {"name": "name", "sector": "sector", "status": "status"}),
    "categories": (
        DataCategory,
        {"name": "name", "description": "description", "sensitivity": "sensitivity"},
    ),
    "purposes": (
        Purpose,
        {
            "name": "name",
            "description": "description",
            "max_consent_days": "max_consent_days",
            "break_glass_allowed": "break_glass_allowed",
            "justification_required": "justification_required",
        },
    ),
    "capacities": (CaseCapacity, {"name": "name", "description": "description"}),
    "sources": (
        Source,
        {
            "agency": "agency_id",
            "adapter": "adapter",
            "timeout_ms": "timeout_ms",
            "status": "status",
            "config": "config",
        },
    ),
}


@dataclass(frozen=True)
class Change:
    """One entry the file creates or changes, and the attributes that differ."""

    kind: str
    id: str
    action: str
    attributes: tuple[str, ...]


def apply(session: Session, document: Mapping[str, Any], channel: str = "cli") -> list[Change]:
    """Check ``document`` and bring the registry to it; the caller commits (or rolls back for
    a dry run). Raises ``RegistryFileError`` with every problem found, having written nothing."""
    loaded = load(
        document,
        session.scalars(select(Agency.id)).all(),
        session.scalars(select(DataCategory.id)).all(),
    )
    _check_adapters(session, loaded)
    changes: list[Change] = []
    for kind in KINDS:
        model, columns = _COLUMNS[kind]
        for entry in loaded[kind]:
            values = {column: entry[key] for key, column in columns.items()}
            if kind == "categories":
                values["fields"] = list(entry["fields_"])
            if "labels" in entry:
                values["labels"] = entry["labels"] or None
            row = session.get(model, entry["id"])
            if row is None:
                session.add(model(id=entry["id"], **values))
                session.flush()
                changed = tuple(sorted(values))
                action = "created"
            else:
                changed = tuple(sorted(c for c, v in values.items() if getattr(row, c) != v))
                for column in changed:
                    setattr(row, column, values[column])
                action = "updated"
            if kind == "sources" and _set_categories(session, entry["id"], entry["categories"]):
                changed = tuple(sorted({*changed, "categories"}))
            if action == "created" or changed:
                changes.append(Change(kind, entry["id"], action, changed))
    session.flush()
    if changes:
        time = audit.event_time()
        audit.append(
            session,
            [
                audit.make_record(
                    "registry.changed",
                    None,
                    time,
                    channel=channel,
                    entry=change.kind,
                    id=change.id,
                    action=change.action,
                    attributes=list(change.attributes),
                )
                for change in changes
            ],
        )
    return changes


def _set_categories(session: Session, source_id: str, wanted: Sequence[str]) -> bool:
    """Make the source provide exactly ``wanted``; whether that changed anything."""
    table = SourceCategory.__table__
    current = set(
        session.scalars(
            select(SourceCategory.category_id).where(SourceCategory.source_id == source_id)
        )
    )
    if current == set(wanted):
        return False
    session.execute(delete(table).where(table.c.source_id == source_id))
    session.execute(insert(table), [{"source_id": source_id, "category_id": c} for c in wanted])
    return True


def _check_adapters(session: Session, loaded: Mapping[str, list[dict[str, Any]]]) -> None:
    """Build each source's adapter as a lookup would (loaded from its entry point, its
    configuration checked against its categories' fields), without connecting to anything."""
    fields = {c.id: list(c.fields) for c in session.scalars(select(DataCategory))}
    fields.update({c["id"]: list(c["fields_"]) for c in loaded["categories"]})
    problems = []
    for source in loaded["sources"]:
        categories = {c: fields[c] for c in source["categories"]}
        try:
            adapter = build_adapter(source["adapter"], source["id"], source["config"], categories)
        except (AdapterConfigError, AdapterLoadError) as exc:
            problems.append(f"sources: {source['id']!r}: {exc}")
            continue
        adapter.close()
    if problems:
        raise RegistryFileError(problems)


def export(session: Session) -> dict[str, list[dict[str, Any]]]:
    """The registry as a document ``apply`` takes back unchanged (JSON-ready)."""
    document: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        model, columns = _COLUMNS[kind]
        entries = []
        for row in session.scalars(select(model).order_by(model.id)):  # type: ignore[attr-defined]
            entry = {"id": row.id} | {key: getattr(row, c) for key, c in columns.items()}
            if kind == "categories":
                entry["fields"] = list(row.fields)
            if kind == "sources":
                entry["categories"] = sorted(c.id for c in row.categories)
            if getattr(row, "labels", None):
                entry["labels"] = row.labels
            entries.append(entry)
        document[kind] = entries
    return document
