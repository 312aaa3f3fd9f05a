"""Canonical audit records and their RFC 9162 leaf hashes. Pure: no I/O, no Flask.

A record is a JSON object of strings, integers, booleans, nulls, lists and objects; floats are
refused so that the canonical form is unambiguous. The canonical form is RFC 8785 (JCS) for that
subset: keys sorted, no insignificant whitespace, UTF-8. JCS is written by hand because for this
subset it is exactly ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
with ASCII keys, which this module checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

LEAF_PREFIX = b"\x00"


class NonCanonicalRecord(ValueError):
    """A record that has no single canonical form, or bytes that are not one."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        return
    if isinstance(value, float):
        raise NonCanonicalRecord(f"{path}: floats are not allowed in audit records")
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key.isascii():
                raise NonCanonicalRecord(f"{path}: keys must be ASCII strings")
            _check(item, f"{path}.{key}")
        return
    raise NonCanonicalRecord(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """The one byte string that represents ``record``."""
    _check(record, "$")
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(canonical: bytes) -> bytes:
    """RFC 9162 section 2.1.1: MTH of one entry is SHA-256(0x00 || entry)."""
    return hashlib.sha256(LEAF_PREFIX + canonical).digest()


def parse_canonical(data: bytes | str) -> dict[str, Any]:
    """Parse a stored record and insist that it is byte-for-byte canonical."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        record = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NonCanonicalRecord(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise NonCanonicalRecord("an audit record is a JSON object")
    if canonical_json(record) != raw:
        raise NonCanonicalRecord("the record is not in canonical form")
    return record
