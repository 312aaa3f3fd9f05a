"""Decision tables: expected decisions for hypothetical requests, kept next to the policies.

A table is a TOML file of ``[[case]]`` rows; ``docs/policies.md`` describes every key. Operators
add a row with each agreement they add, and ``casebroker policy test`` and the test suite run
every row, so a change that alters a decision nobody meant to alter fails review.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policies.engine import Decision, DecisionRequest, PolicyEngine
from policies.loader import DEFAULT_POLICY_DIR

DEFAULT_TABLE = DEFAULT_POLICY_DIR / "decisions.toml"
TABLE_NAME = "decisions.toml"

#: The demo's categories and their sensitivity, so rows and ``explain`` may leave it out.
DEMO_SENSITIVITY: Mapping[str, str] = {
    "income": "high",
    "address": "medium",
    "benefits": "high",
    "health.summary": "special",
    "vehicle": "low",
}

_REQUIRED = ("requester", "provider", "category", "purpose", "expect")
_STRINGS = ("name", "requester", "provider", "category", "sensitivity", "purpose", "client")
_BOOLS = ("consent", "justification", "break_glass", "open_case", "officer_assigned")
_EXPECTATIONS = ("expect", "fields", "policy", "legal_basis", "reason")
_KEYS = frozenset((*_STRINGS, *_BOOLS, *_EXPECTATIONS, "officer_roles", "case_capacities", "now"))


class TableError(ValueError):
    """The table file is not a valid decision table; the message names the row."""


@dataclass(frozen=True)
class Case:
    """One row: a request and what its decision must be."""

    name: str
    request: DecisionRequest
    permit: bool
    fields: tuple[str, ...] | None = None
    policy: str | None = None
    legal_basis: str | None = None
    reason: str | None = None


def parse_time(value: Any, where: str) -> datetime:
    """A TOML datetime or ISO 8601 text, in UTC (naive values are taken as UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise TableError(f"{where}: now {value!r} is not an ISO 8601 time") from None
    if not isinstance(value, datetime):
        raise TableError(f"{where}: now must be a date-time")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _case(row: Mapping[str, Any], index: int, default_now: datetime) -> Case:
    where = f"case {index + 1}" + (f" ({row['name']})" if isinstance(row.get("name"), str) else "")
    unknown = sorted(set(row) - _KEYS)
    if unknown:
        raise TableError(f"{where}: unknown key(s) {', '.join(unknown)}")
    missing = [key for key in _REQUIRED if key not in row]
    if missing:
        raise TableError(f"{where}: missing {', '.join(missing)}")
    for key in _STRINGS:
        if key in row and not isinstance(row[key], str):
            raise TableError(f"{where}: {key} must be a string")
    for key in _BOOLS:
        if not isinstance(row.get(key, False), bool):
            raise TableError(f"{where}: {key} must be true or false")
    if row["expect"] not in {"permit", "deny"}:
        raise TableError(f"{where}: expect must be 'permit' or 'deny'")
    for key in ("fields", "officer_roles", "case_capacities"):
        values = row.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise TableError(f"{where}: {key} must be a list of strings")
    if row.get("break_glass") and not row.get("justification"):
        raise TableError(f"{where}: break_glass = true needs justification = true")
    sensitivity = row.get("sensitivity") or DEMO_SENSITIVITY.get(row["category"])
    if sensitivity is None:
        raise TableError(f"{where}: give the sensitivity of category {row['category']!r}")
    now = parse_time(row["now"], where) if "now" in row else default_now
    request = DecisionRequest(
        requester=row["requester"],
        client_id=row.get("client", f"{row['requester']}-system"),
        officer_roles=tuple(row.get("officer_roles", [])),
        provider=row["provider"],
        category=row["category"],
        sensitivity=sensitivity,
        purpose=row["purpose"],
        consent=row.get("consent", False),
        justification=row.get("justification", False),
        break_glass=row.get("break_glass", False),
        now=now,
        open_case=row.get("open_case", True),
        case_capacities=tuple(row.get("case_capacities", [])),
        officer_assigned=row.get("officer_assigned", False),
    )
    name = row.get("name") or (
        f"{row['requester']}-{row['provider']}-{row['category']}-{row['purpose']}-{index + 1}"
    )
    return Case(
        name=name,
        request=request,
        permit=row["expect"] == "permit",
        fields=tuple(row["fields"]) if "fields" in row else None,
        policy=row.get("policy"),
        legal_basis=row.get("legal_basis"),
        reason=row.get("reason"),
    )


def load_table(path: Path) -> list[Case]:
    """Read a decision table; raise ``TableError`` naming the first bad row."""
    try:
        with Path(path).open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise TableError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TableError(f"{path}: {exc}") from None
    unknown = sorted(set(document) - {"now", "case"})
    if unknown:
        raise TableError(f"{path}: unknown top-level key(s) {', '.join(unknown)}")
    default_now = parse_time(document["now"], "now") if "now" in document else datetime.now(UTC)
    rows = document.get("case", [])
    if not isinstance(rows, list) or not rows:
        raise TableError(f"{path}: no [[case]] rows")
    cases = [_case(row, index, default_now) for index, row in enumerate(rows)]
    names = [case.name for case in cases]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise TableError(f"{path}: duplicate case name(s) {', '.join(duplicates)}")
    return cases


def mismatches(case: Case, decision: Decision) -> list[str]:
    """How a decision differs from what its row expects; ``[]`` when it matches."""
    problems: list[str] = []
    if decision.permit != case.permit:
        got = "permit" if decision.permit else "deny"
        want = "permit" if case.permit else "deny"
        problems.append(f"expected {want}, got {got} ({decision.reason})")
    if case.fields is not None:
        got_fields = decision.obligations.fields if decision.obligations else ()
        if sorted(got_fields) != sorted(case.fields):
            problems.append(f"expected fields {sorted(case.fields)}, got {sorted(got_fields)}")
    if case.policy is not None and case.policy not in decision.policy_ids:
        problems.append(f"expected policy {case.policy}, got {list(decision.policy_ids)}")
    if case.legal_basis is not None and decision.legal_basis != case.legal_basis:
        problems.append(f"expected legal basis {case.legal_basis}, got {decision.legal_basis}")
    if case.reason is not None and case.reason not in decision.reason:
        problems.append(f"expected reason containing {case.reason!r}, got {decision.reason!r}")
    if decision.errors:
        problems.append(f"policy errors: {'; '.join(decision.errors)}")
    return problems


def run_case(engine: PolicyEngine, case: Case) -> list[str]:
    """Decide one row on its own, so a row's facts never meet another row's."""
    return mismatches(case, engine.decide(case.request))
