"""Annotation rules: what an agreement must declare and what the enforcement point understands.

A permit is only as good as the obligations the broker can carry out. Every annotation key on a
permit that is not in ``KNOWN_KEYS`` is an obligation this broker does not understand, so the
permit is marked defective and any decision it determines is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

KNOWN_KEYS = frozenset({"id", "legal_basis", "fields", "description", "reason"})
LEGAL_BASES = frozenset({"consent", "statute", "vital-interest"})
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
FIELD_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class PolicyInfo:
    """One loaded policy as the engine needs it: its effect, obligations and what is wrong."""

    id: str
    effect: str
    file: str
    legal_basis: str | None
    fields: tuple[str, ...]
    reason: str | None
    description: str | None
    #: Problems that make a permit unusable: decisions it determines are denied.
    defects: tuple[str, ...]
    #: Problems validation reports that do not change decisions (a forbid denies regardless).
    warnings: tuple[str, ...]


def parse_fields(value: str) -> tuple[tuple[str, ...], list[str]]:
    """Split a ``@fields`` value; explicit names only, because a wildcard outlives the schema."""
    names: list[str] = []
    problems: list[str] = []
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            problems.append("@fields has an empty field name")
        elif name == "*":
            problems.append("@fields must list field names; '*' is not allowed")
        elif not FIELD_PATTERN.match(name):
            problems.append(f"@fields has an invalid field name {name!r}")
        elif name in names:
            problems.append(f"@fields lists {name!r} twice")
        else:
            names.append(name)
    return tuple(names), problems


def _permit_defects(annotations: Mapping[str, str], reads_consent: bool) -> tuple[str, ...]:
    defects: list[str] = []
    for key in sorted(annotations):
        if key.startswith("obligation_"):
            defects.append(f"obligation @{key} is not understood by this broker")
        elif key not in KNOWN_KEYS:
            defects.append(f"unknown annotation @{key} is an obligation this broker cannot meet")
    basis = annotations.get("legal_basis")
    if basis is None:
        defects.append("permit has no @legal_basis")
    elif basis not in LEGAL_BASES:
        defects.append(f"@legal_basis {basis!r} is not one of {', '.join(sorted(LEGAL_BASES))}")
    elif basis == "consent" and not reads_consent:
        defects.append("@legal_basis is consent but the condition never reads context.consent")
    if "fields" not in annotations:
        defects.append("permit has no @fields")
    else:
        names, problems = parse_fields(annotations["fields"])
        defects.extend(problems)
        if not names and not problems:
            defects.append("@fields is empty")
    return tuple(defects)


def _forbid_warnings(annotations: Mapping[str, str]) -> tuple[str, ...]:
    warnings: list[str] = []
    if not annotations.get("reason", "").strip():
        warnings.append("forbid has no @reason for the requester")
    for key in sorted(annotations):
        if key not in KNOWN_KEYS:
            warnings.append(f"unknown annotation @{key}")
        elif key in {"legal_basis", "fields"}:
            warnings.append(f"@{key} has no meaning on a forbid")
    return tuple(warnings)


def describe_policy(
    policy_id: str,
    effect: str,
    file: str,
    annotations: Mapping[str, str],
    reads_consent: bool,
) -> PolicyInfo:
    """Read a policy's annotations into a ``PolicyInfo``, recording what is wrong with them."""
    permit = effect == "permit"
    fields: tuple[str, ...] = ()
    if permit and "fields" in annotations:
        fields, _ = parse_fields(annotations["fields"])
    return PolicyInfo(
        id=policy_id,
        effect=effect,
        file=file,
        legal_basis=annotations.get("legal_basis") if permit else None,
        fields=fields,
        reason=annotations.get("reason") or None,
        description=annotations.get("description") or None,
        defects=_permit_defects(annotations, reads_consent) if permit else (),
        warnings=() if permit else _forbid_warnings(annotations),
    )
