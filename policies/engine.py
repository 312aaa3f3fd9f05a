"""The policy decision point: Cedar over the agreements, and the obligations a permit carries.

The engine is pure: it reads the policy files and nothing else, and decides from the facts the
caller passes. Default deny and forbid-wins are Cedar's own semantics. On top of Cedar it
refuses any permit whose obligations it does not understand, and fails closed when a policy
cannot be evaluated.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy

from policies.loader import (
    Fingerprint,
    PolicyFilesChanging,
    PolicyLoadError,
    PolicySnapshot,
    fingerprint,
    load_directory,
)
from policies.translate import cedar_request, entities_json, entity_facts

log = logging.getLogger("casebroker.policies")

#: Policy sets kept after they leave force, so a decision taken just before a reload can still
#: have its version's files recorded.
RECENT_SNAPSHOTS = 4
#: Entities handles kept per snapshot; a lookup's batch repeats the same few combinations.
ENTITY_CACHE_SIZE = 512

#: Relaxations tried, in order, to tell a requester what a default deny was missing.
_HINTS: tuple[tuple[str, dict[str, bool]], ...] = (
    ("consent", {"consent": True}),
    ("justification", {"justification": True}),
    ("break-glass", {"break_glass": True, "justification": True}),
)


@dataclass(frozen=True)
class DecisionRequest:
    """The facts of one (requester, provider, category, purpose) access, gathered by the caller."""

    requester: str
    client_id: str
    officer_roles: tuple[str, ...]
    provider: str
    category: str
    sensitivity: str
    purpose: str
    consent: bool
    justification: bool
    break_glass: bool
    now: datetime
    #: The requester has an open case on the person for this purpose (a live reason to ask).
    open_case: bool = False
    #: The capacities in which those cases deal with the person ("applicant", ...).
    case_capacities: tuple[str, ...] = ()
    #: The requesting officer is assigned to one of those cases.
    officer_assigned: bool = False


@dataclass(frozen=True)
class Obligations:
    """What the enforcement point must do with a permit: return only these fields."""

    fields: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """The outcome, the policies that determined it, and a reason the requester may see."""

    permit: bool
    policy_ids: tuple[str, ...]
    legal_basis: str | None
    obligations: Obligations | None
    reason: str
    errors: tuple[str, ...] = ()
    #: The version of the policy set that decided (``None`` when none was in force).
    policy_version: str | None = None


def _deny(reason: str, policy_ids: tuple[str, ...] = (), errors: tuple[str, ...] = ()) -> Decision:
    return Decision(False, policy_ids, None, None, reason, errors)


def _no_agreement(request: DecisionRequest) -> Decision:
    return _deny(
        f"no data-sharing agreement covers {request.category} from {request.provider} "
        f"for {request.purpose}"
    )


def _interpret(snapshot: PolicySnapshot, result: cedarpy.AuthzResult) -> Decision | None:
    """Turn one Cedar answer into a decision; ``None`` for a default deny still to explain."""
    errors = tuple(result.diagnostics.errors)
    if errors or result.decision is cedarpy.Decision.NoDecision:
        return _deny("policy error: the policies could not be evaluated", errors=errors)
    ids = tuple(sorted(result.diagnostics.reasons))
    infos = [snapshot.policies[policy_id] for policy_id in ids]
    if not result.allowed:
        if not ids:
            return None
        reason = next((info.reason for info in infos if info.reason), None)
        return _deny(reason or f"denied by policy {ids[0]}", ids)
    defects = tuple(f"{info.id}: {defect}" for info in infos for defect in info.defects)
    if defects:
        return _deny(f"policy error: {defects[0]}", ids, defects)
    fields = tuple(dict.fromkeys(name for info in infos for name in info.fields))
    basis = ",".join(sorted({info.legal_basis for info in infos if info.legal_basis}))
    return Decision(True, ids, basis, Obligations(fields), f"permitted by {', '.join(ids)}")


def _relaxations(request: DecisionRequest) -> list[tuple[str, dict[str, bool]]]:
    """Each fact the request lacks that a policy might require, with its label."""
    return [
        (label, overrides)
        for label, overrides in _HINTS
        if not getattr(request, label.replace("-", "_"))
    ]


def _combined(relaxations: list[tuple[str, dict[str, bool]]]) -> tuple[str, dict[str, bool]]:
    """All relaxations at once; break-glass already includes the justification."""
    labels = [label for label, _ in relaxations]
    if "break-glass" in labels and "justification" in labels:
        labels.remove("justification")
    overrides: dict[str, bool] = {}
    for _, each in relaxations:
        overrides.update(each)
    return " and ".join(labels), overrides


def _consistent_groups(requests: Sequence[DecisionRequest]) -> list[list[int]]:
    """Split a batch so no group gives one category two sensitivities; normally one group."""
    groups: list[tuple[dict[str, str], list[int]]] = []
    for index, request in enumerate(requests):
        for seen, members in groups:
            if seen.setdefault(request.category, request.sensitivity) == request.sensitivity:
                members.append(index)
                break
        else:
            groups.append(({request.category: request.sensitivity}, [index]))
    return [members for _, members in groups]


def _probe_problems(snapshot: PolicySnapshot) -> list[str]:
    """Check that the schema accepts the entities and requests this engine builds."""
    probe = DecisionRequest(
        requester="probe-requester",
        client_id="probe-client",
        officer_roles=("probe",),
        provider="probe-provider",
        category="probe.category",
        sensitivity="low",
        purpose="probe",
        consent=False,
        justification=False,
        break_glass=False,
        now=datetime(2000, 1, 1, tzinfo=UTC),
    )
    try:
        entities = cedarpy.Entities.from_json_str(
            entities_json(entity_facts([probe])), snapshot.schema
        )
        result = cedarpy.is_authorized_batch(
            [cedar_request(probe)], snapshot.policy_set, entities, schema=snapshot.schema
        )[0]
    except ValueError as exc:
        return [f"the schema does not fit the engine's entities: {exc}"]
    if result.decision is cedarpy.Decision.NoDecision:
        return [
            f"the schema does not fit the engine's requests: {e}" for e in result.diagnostics.errors
        ]
    return []


def load_snapshot(directory: Path) -> PolicySnapshot:
    """Load a directory and check its schema against the engine; raise ``PolicyLoadError``."""
    snapshot = load_directory(directory)
    problems = _probe_problems(snapshot)
    if problems:
        raise PolicyLoadError(problems, snapshot.problems)
    return snapshot


def validate_directory(directory: Path) -> list[str]:
    """Every problem with a policy directory, fatal or not; ``[]`` when it is clean."""
    try:
        snapshot = load_snapshot(directory)
    except PolicyLoadError as exc:
        return exc.problems + exc.annotation_problems
    return snapshot.problems


class PolicyEngine:
    """Decides accesses against the policy files of one directory, reloading them on change."""

    def __init__(self, directory: Path, reload_interval: float = 1.0) -> None:
        if reload_interval < 0:
            raise ValueError("reload_interval must not be negative")
        self.directory = Path(directory)
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._snapshot: PolicySnapshot | None = None
        #: The last sets put in force, by version, oldest first.
        self._recent: dict[str, PolicySnapshot] = {}
        self._last_error: str | None = None
        self._rejected: Fingerprint | None = None
        self._next_check = 0.0
        with self._lock:
            self._check_files()

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """The ids of the policies in force, sorted."""
        snapshot = self._snapshot
        return tuple(sorted(snapshot.policies)) if snapshot else ()

    @property
    def last_error(self) -> str | None:
        """Why the files on disk were rejected; ``None`` when they are what is in force."""
        return self._last_error

    @property
    def version(self) -> str | None:
        """Content hash of the policy set in force: equal on every node serving the same files."""
        snapshot = self._snapshot
        return snapshot.version if snapshot else None

    @property
    def loaded(self) -> bool:
        """Whether any policy set is in force; without one every decision is a deny."""
        return self._snapshot is not None

    def validate(self) -> list[str]:
        """Check the files on disk now: schema validation, annotations and obligations."""
        return validate_directory(self.directory)

    def decide(self, request: DecisionRequest) -> Decision:
        """Decide one access."""
        return self.decide_many([request])[0]

    def decide_many(self, requests: Sequence[DecisionRequest]) -> list[Decision]:
        """Decide a lookup's accesses in one Cedar call (a second one only to explain denies)."""
        snapshot = self._current()
        if not requests:
            return []
        if snapshot is None:
            error = self._last_error or "no policy set loaded"
            unavailable = _deny("policy error: no valid policy set is loaded", errors=(error,))
            return [unavailable] * len(requests)
        groups = _consistent_groups(requests)
        decisions: list[Decision | None] = [None] * len(requests)
        for members in groups:
            batch = self._decide_batch(snapshot, [requests[i] for i in members])
            for index, decision in zip(members, batch, strict=True):
                decisions[index] = dataclasses.replace(decision, policy_version=snapshot.version)
        return [decision for decision in decisions if decision is not None]

    def files_of(self, version: str) -> dict[str, str] | None:
        """The files of a policy set this engine has had in force, by version (the last few
        only); what ``record`` needs to keep the text of a version that decided."""
        snapshot = self._recent.get(version)
        return dict(snapshot.files) if snapshot else None

    def _decide_batch(
        self, snapshot: PolicySnapshot, requests: Sequence[DecisionRequest]
    ) -> list[Decision]:
        """Decide requests whose facts fit one entity set, in one Cedar call."""
        entities = self._entities(snapshot, requests)
        results = cedarpy.is_authorized_batch(
            [cedar_request(request) for request in requests], snapshot.policy_set, entities
        )
        decisions = [_interpret(snapshot, result) for result in results]
        unexplained = [i for i, decision in enumerate(decisions) if decision is None]
        if unexplained:
            explained = self._explain(snapshot, entities, [requests[i] for i in unexplained])
            for index, decision in zip(unexplained, explained, strict=True):
                decisions[index] = decision
        return [decision for decision in decisions if decision is not None]

    def _explain(
        self,
        snapshot: PolicySnapshot,
        entities: cedarpy.Entities,
        requests: list[DecisionRequest],
    ) -> list[Decision]:
        """Explain default denies: would consent, a justification or break-glass have helped?

        First every missing fact at once, one variant per request, which settles the common
        "no agreement" case; then, only where that helped, each fact alone, to name the least.
        """
        relaxations = [_relaxations(request) for request in requests]
        combined = {i: _combined(each) for i, each in enumerate(relaxations) if each}
        first = list(combined)
        allowed = self._allowed(snapshot, entities, [(requests[i], combined[i][1]) for i in first])
        found = {i: combined[i][0] for i, ok in zip(first, allowed, strict=True) if ok}
        singles = [
            (i, single) for i in found if len(relaxations[i]) > 1 for single in relaxations[i]
        ]
        allowed = self._allowed(
            snapshot, entities, [(requests[i], overrides) for i, (_, overrides) in singles]
        )
        named: dict[int, str] = {}
        for (i, (label, _)), ok in zip(singles, allowed, strict=True):
            if ok:
                named.setdefault(i, label)
        found.update(named)
        return [
            _deny(f"{found[i]} required") if i in found else _no_agreement(request)
            for i, request in enumerate(requests)
        ]

    @staticmethod
    def _allowed(
        snapshot: PolicySnapshot,
        entities: cedarpy.Entities,
        variants: list[tuple[DecisionRequest, dict[str, bool]]],
    ) -> list[bool]:
        """Whether Cedar allows each request with some context facts overridden."""
        if not variants:
            return []
        results = cedarpy.is_authorized_batch(
            [cedar_request(request, **overrides) for request, overrides in variants],
            snapshot.policy_set,
            entities,
        )
        return [result.allowed for result in results]

    @staticmethod
    def _entities(snapshot: PolicySnapshot, requests: Sequence[DecisionRequest]) -> Any:
        key = entity_facts(requests)
        cache = snapshot.entity_cache
        handle = cache.get(key)
        if handle is None:
            handle = cedarpy.Entities.from_json_str(entities_json(key), snapshot.schema)
            if len(cache) >= ENTITY_CACHE_SIZE:
                cache.clear()
            cache[key] = handle
        return handle

    def _current(self) -> PolicySnapshot | None:
        """The snapshot to decide with, after a change check when one is due."""
        if time.monotonic() >= self._next_check and self._lock.acquire(blocking=False):
            try:
                if time.monotonic() >= self._next_check:
                    self._check_files()
            finally:
                self._lock.release()
        return self._snapshot

    def _check_files(self) -> None:
        """Reload when the files' fingerprint changed; keep the last good set on failure."""
        self._next_check = time.monotonic() + self.reload_interval
        try:
            current = fingerprint(self.directory)
        except OSError as exc:
            self._reject(None, f"cannot read {self.directory}: {exc}")
            return
        snapshot = self._snapshot
        if snapshot is not None and current == snapshot.fingerprint:
            if self._last_error is not None:
                log.info("policy files in %s are back to the set in force", self.directory)
            self._rejected = None
            self._last_error = None
            return
        if current == self._rejected:
            return
        try:
            fresh = load_snapshot(self.directory)
        except PolicyFilesChanging:
            return
        except PolicyLoadError as exc:
            self._reject(current, "; ".join(exc.problems))
            return
        except OSError as exc:
            self._reject(current, f"cannot read {self.directory}: {exc}")
            return
        self._snapshot = fresh
        self._recent[fresh.version] = fresh
        while len(self._recent) > RECENT_SNAPSHOTS:
            del self._recent[next(iter(self._recent))]
        self._rejected = None
        self._last_error = None
        log.info(
            "policy set loaded from %s: %d policies, version %s",
            self.directory,
            len(fresh.policies),
            fresh.version[:12],
        )
        for problem in fresh.problems:
            log.warning("policy problem: %s", problem)

    def _reject(self, current: Fingerprint | None, error: str) -> None:
        self._rejected = current
        self._last_error = error
        kept = "keeping the last good set" if self._snapshot else "no set in force, denying all"
        log.error("policy files in %s rejected (%s): %s", self.directory, kept, error)
