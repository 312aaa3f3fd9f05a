"""Reading a policy directory into one immutable, validated snapshot.

A directory holds exactly one Cedar schema (``*.cedarschema``) at its top and any number of
policy files (``*.cedar``, in any subfolder). Loading is all or nothing: a file that does not
parse, a policy that does not validate against the schema, or a missing or duplicate ``@id``
rejects the whole set, so a process never serves a half-loaded one. Annotation problems do not
reject the set; they are carried per policy (see ``annotations``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from policies.annotations import ID_PATTERN, PolicyInfo, describe_policy

DEFAULT_POLICY_DIR = Path(__file__).resolve().parent
SCHEMA_SUFFIX = ".cedarschema"
POLICY_SUFFIX = ".cedar"

#: A directory's state as seen by ``stat``: (relative path, size, mtime_ns, inode) per file.
Fingerprint = tuple[tuple[str, int, int, int], ...]


class PolicyLoadError(Exception):
    """The directory does not hold a usable policy set; ``problems`` says why, one per line."""

    def __init__(self, problems: list[str], annotation_problems: list[str] | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.annotation_problems = annotation_problems or []


class PolicyFilesChanging(PolicyLoadError):
    """The files changed while being read; the next check reads them again."""


@dataclass(frozen=True)
class PolicySnapshot:
    """A parsed, validated policy set shared by all threads; only its entity cache grows."""

    policy_set: cedarpy.PolicySet
    schema: cedarpy.Schema
    policies: dict[str, PolicyInfo]
    fingerprint: Fingerprint
    #: SHA-256 over the files' names and contents: the same files give the same version on
    #: every node, so logs and audit events can say which policy set decided.
    version: str
    #: The files the version was computed over, by name (relative to the directory): the text
    #: an auditor needs to see which agreement decided, after the files have moved on.
    files: dict[str, str] = field(default_factory=dict, compare=False)
    #: Entities handles built for this snapshot's schema, keyed by the facts they encode.
    entity_cache: dict[Any, cedarpy.Entities] = field(default_factory=dict, compare=False)

    @property
    def problems(self) -> list[str]:
        """Annotation problems of the loaded policies, for validation reports."""
        return _annotation_problems(self.policies)


def _annotation_problems(policies: dict[str, PolicyInfo]) -> list[str]:
    return [
        f"{info.file}: {info.id}: {problem}"
        for info in policies.values()
        for problem in info.defects + info.warnings
    ]


def _policy_files(directory: Path) -> list[Path]:
    """Policy files in any subfolder; hidden ones (editor and deploy temporaries) are skipped."""
    return sorted(
        path
        for path in directory.rglob(f"*{POLICY_SUFFIX}")
        if path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(directory).parts)
    )


def _schema_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob(f"*{SCHEMA_SUFFIX}") if path.is_file())


def fingerprint(directory: Path) -> Fingerprint:
    """Stat every schema and policy file; cheap enough to run on the request path."""
    entries = []
    for path in _schema_files(directory) + _policy_files(directory):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        rel = path.relative_to(directory).as_posix()
        entries.append((rel, stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return tuple(sorted(entries))


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _reads_consent(policy: dict[str, Any]) -> bool:
    """Whether a policy's conditions read ``context.consent`` (in the Cedar JSON form)."""
    for node in _walk(policy.get("conditions", [])):
        access = node.get(".")
        if (
            isinstance(access, dict)
            and access.get("left") == {"Var": "context"}
            and access.get("attr") == "consent"
        ):
            return True
    return False


@dataclass
class _Collected:
    static: dict[str, dict[str, Any]] = field(default_factory=dict)
    infos: dict[str, PolicyInfo] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _collect_file(
    rel: str, text: str, schema: cedarpy.Schema | None, collected: _Collected
) -> None:
    """Parse one file, validate it, and add its policies keyed by their ``@id``."""
    try:
        est = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        collected.problems.append(f"{rel}: cannot parse: {exc}")
        return
    if est.get("templates"):
        collected.problems.append(f"{rel}: templates are not supported; write static policies")
    positional: dict[str, str] = {}
    for cedar_id, policy in est.get("staticPolicies", {}).items():
        annotations: dict[str, str] = policy.get("annotations") or {}
        policy_id = (annotations.get("id") or "").strip()
        positional[cedar_id] = policy_id or cedar_id
        if not policy_id:
            collected.problems.append(f"{rel}: a {policy['effect']} policy has no @id")
            continue
        if not ID_PATTERN.match(policy_id):
            collected.problems.append(
                f"{rel}: @id {policy_id!r} must be lower-case letters, digits, '.', '-' or '_'"
            )
            continue
        if policy_id in collected.infos:
            other = collected.infos[policy_id].file
            collected.problems.append(f"{rel}: @id {policy_id!r} is also used in {other}")
            continue
        collected.static[policy_id] = policy
        collected.infos[policy_id] = describe_policy(
            policy_id, policy["effect"], rel, annotations, _reads_consent(policy)
        )
    if schema is None:
        return
    result = cedarpy.validate_policies(text, schema)
    for error in result.errors:
        name = positional.get(error.policy_id, error.policy_id)
        message = error.error.replace(f"`{error.policy_id}`", f"`{name}`")
        collected.problems.append(f"{rel}: {name}: {message}")


def load_directory(directory: Path) -> PolicySnapshot:
    """Parse and validate every file in ``directory``; raise ``PolicyLoadError`` if unusable."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolicyLoadError([f"{directory}: not a directory"])
    before = fingerprint(directory)
    digest = hashlib.sha256()
    problems: list[str] = []
    files: dict[str, str] = {}

    schema_files = _schema_files(directory)
    schema: cedarpy.Schema | None = None
    if len(schema_files) != 1:
        found = ", ".join(p.name for p in schema_files) or "none"
        problems.append(f"expected exactly one *{SCHEMA_SUFFIX} file, found {found}")
    else:
        text = schema_files[0].read_text(encoding="utf-8")
        digest.update(schema_files[0].name.encode() + b"\0" + text.encode() + b"\0")
        files[schema_files[0].name] = text
        try:
            schema = cedarpy.Schema.from_str(text)
        except ValueError as exc:
            problems.append(f"{schema_files[0].name}: {exc}")

    collected = _Collected()
    for path in _policy_files(directory):
        rel = path.relative_to(directory).as_posix()
        text = path.read_text(encoding="utf-8")
        digest.update(rel.encode() + b"\0" + text.encode() + b"\0")
        files[rel] = text
        _collect_file(rel, text, schema, collected)
    problems.extend(collected.problems)
    if problems or schema is None:
        raise PolicyLoadError(problems, _annotation_problems(collected.infos))

    document = {"staticPolicies": collected.static, "templates": {}, "templateLinks": []}
    try:
        policy_set = cedarpy.PolicySet.from_json_str(json.dumps(document))
    except ValueError as exc:
        raise PolicyLoadError([f"cannot build the policy set: {exc}"]) from None
    if fingerprint(directory) != before:
        raise PolicyFilesChanging(["files changed while loading; try again"])
    return PolicySnapshot(
        policy_set=policy_set,
        schema=schema,
        policies=collected.infos,
        fingerprint=before,
        version=digest.hexdigest(),
        files=files,
    )


__all__ = [
    "DEFAULT_POLICY_DIR",
    "Fingerprint",
    "PolicyFilesChanging",
    "PolicyLoadError",
    "PolicySnapshot",
    "fingerprint",
    "load_directory",
]
