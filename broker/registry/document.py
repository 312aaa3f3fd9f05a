"""The registry file: agencies, data categories, purposes, case capacities and sources, as an
operator keeps them.

A TOML (or JSON) document with five arrays of tables, checked here before anything is written:
the shape and values of each entry (marshmallow), then what depends on more than one entry
(ids unique, a source's agency and categories known, a purpose that allows break-glass also
requires a justification). What is already in the database counts as known, so a file may add
one source to agencies registered earlier.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from broker.models import SLUG
from broker.registry.names import LANGUAGES

MAX_FILE_BYTES = 4 * 1024 * 1024
#: The order entries are written in: what a later kind refers to comes first.
KINDS = ("agencies", "categories", "purposes", "capacities", "sources")


class RegistryFileError(ValueError):
    """The file cannot be applied; ``problems`` says each thing wrong, with where it is."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _id() -> fields.String:
    return fields.String(required=True, validate=[validate.Length(1, 64), validate.Regexp(SLUG)])


def _name() -> fields.String:
    return fields.String(required=True, validate=validate.Length(1, 200))


class _Strict(Schema):
    """An unknown key is an error, not a silently ignored typo."""

    class Meta:
        unknown = RAISE


class _Label(_Strict):
    name = fields.String(required=True, validate=validate.Length(1, 200))
    description = fields.String(validate=validate.Length(max=4000))


def _labels() -> fields.Dict:
    """Other languages than English, e.g. ``labels.fr = {name = "...", description = "..."}``."""
    return fields.Dict(
        keys=fields.String(validate=validate.OneOf([lang for lang in LANGUAGES if lang != "en"])),
        values=fields.Nested(_Label),
        load_default=dict,
    )


class AgencyEntry(_Strict):
    id = _id()
    name = _name()
    sector = fields.String(required=True, validate=validate.Length(1, 64))
    status = fields.String(load_default="active", validate=validate.OneOf(["active", "suspended"]))
    labels = _labels()


class CategoryEntry(_Strict):
    id = _id()
    name = _name()
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    sensitivity = fields.String(
        required=True, validate=validate.OneOf(["low", "medium", "high", "special"])
    )
    fields_ = fields.List(
        fields.String(validate=[validate.Length(1, 64), validate.Regexp(r"^[A-Za-z_][\w]*$")]),
        data_key="fields",
        required=True,
        validate=validate.Length(1, 200),
    )
    labels = _labels()

    @validates_schema
    def _unique_fields(self, data: dict[str, Any], **_: Any) -> None:
        if len(set(data["fields_"])) != len(data["fields_"]):
            raise ValidationError("Fields must not repeat.", "fields")


class PurposeEntry(_Strict):
    id = _id()
    name = _name()
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    max_consent_days = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(1, 3650)
    )
    break_glass_allowed = fields.Boolean(load_default=False)
    justification_required = fields.Boolean(load_default=False)
    labels = _labels()

    @validates_schema
    def _break_glass_justified(self, data: dict[str, Any], **_: Any) -> None:
        if data["break_glass_allowed"] and not data["justification_required"]:
            raise ValidationError(
                "A purpose that allows break-glass must require a justification.",
                "justification_required",
            )


class CapacityEntry(_Strict):
    id = _id()
    name = _name()
    description = fields.String(load_default="", validate=validate.Length(max=4000))
    labels = _labels()


class SourceEntry(_Strict):
    id = _id()
    agency = _id()
    adapter = fields.String(required=True, validate=validate.Length(1, 64))
    categories = fields.List(_id(), required=True, validate=validate.Length(1, 100))
    timeout_ms = fields.Integer(load_default=2000, validate=validate.Range(1, 60000))
    status = fields.String(load_default="active", validate=validate.OneOf(["active", "disabled"]))
    config = fields.Dict(keys=fields.String(), load_default=dict)


class RegistryDocument(_Strict):
    agencies = fields.List(fields.Nested(AgencyEntry), load_default=list)
    categories = fields.List(fields.Nested(CategoryEntry), load_default=list)
    purposes = fields.List(fields.Nested(PurposeEntry), load_default=list)
    capacities = fields.List(fields.Nested(CapacityEntry), load_default=list)
    sources = fields.List(fields.Nested(SourceEntry), load_default=list)


def read_file(path: Path) -> dict[str, Any]:
    """The document in ``path`` (``.json``, else TOML), parsed but not yet checked."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RegistryFileError([f"cannot read {path}: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise RegistryFileError([f"{path} is larger than {MAX_FILE_BYTES} bytes"])
    try:
        text = raw.decode("utf-8")
        document = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryFileError([f"{path} is not valid {_format(path)}: {exc}"]) from None
    if not isinstance(document, dict):
        raise RegistryFileError([f"{path} must hold a table of entries"])
    return document


def _format(path: Path) -> str:
    return "JSON" if path.suffix == ".json" else "TOML"


def load(
    document: Mapping[str, Any],
    known_agencies: Iterable[str] = (),
    known_categories: Iterable[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """The checked document; ``known_*`` are the ids already registered in the database."""
    try:
        loaded: dict[str, list[dict[str, Any]]] = RegistryDocument().load(document)
    except ValidationError as exc:
        raise RegistryFileError(list(_flatten(exc.messages))) from None
    problems = []
    for kind in KINDS:
        seen: set[str] = set()
        for entry in loaded[kind]:
            if entry["id"] in seen:
                problems.append(f"{kind}: {entry['id']!r} appears more than once")
            seen.add(entry["id"])
    agencies = set(known_agencies) | {a["id"] for a in loaded["agencies"]}
    categories = set(known_categories) | {c["id"] for c in loaded["categories"]}
    for source in loaded["sources"]:
        where = f"sources: {source['id']!r}"
        if source["agency"] not in agencies:
            problems.append(f"{where}: agency {source['agency']!r} is not registered")
        unknown = [c for c in source["categories"] if c not in categories]
        if unknown:
            problems.append(f"{where}: categories not registered: {', '.join(unknown)}")
        if len(set(source["categories"])) != len(source["categories"]):
            problems.append(f"{where}: categories must not repeat")
    if problems:
        raise RegistryFileError(problems)
    return loaded


def _flatten(messages: Any, where: str = "") -> Iterable[str]:
    """marshmallow's nested error dict as "agencies.0.id: message" lines."""
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from _flatten(value, f"{where}.{key}" if where else str(key))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        for message in messages:
            yield f"{where}: {message}" if where else message
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            yield from _flatten(value, f"{where}.{index}")
    else:
        yield f"{where}: {messages}"
