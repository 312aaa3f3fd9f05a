"""HTTP layer of the audit log: checkpoints and proofs (public), the auditor API (auditors only).

Checkpoints, the verifier key and proofs hold hashes only, so anyone may fetch them: an agency
proves that its lookup was logged without asking anyone's leave. Event searches, statistics and
exports need an auditor (``audit.auth``) and are themselves audit events, committed before the
answer leaves; so do the files of the policy sets that decided (policy text, not personal data,
so reading them is not itself logged).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

import audit
from audit import checkpoints, merkle, policy_versions, search, tree
from audit.auth import RESOURCE_PATH, Auditor, authenticate_auditor
from audit.integrator import run as integrate
from audit.models import AuditCheckpoint
from broker.db import get_db, get_session
from broker.problems import Problem, ValidationProblem

bp = Blueprint("audit", __name__, url_prefix=RESOURCE_PATH)

_NUMBER = re.compile(r"[0-9]{1,19}")
_VERSION = re.compile(r"[0-9a-f]{64}")
MAX_INDEX = (1 << 63) - 1
EXPORT_FORMATS = {"csv": "text/csv", "jsonl": "application/jsonl"}


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _number(name: str, required: bool = True) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        if required:
            raise ValidationProblem(f"The {name} parameter is required.", parameter=name)
        return None
    if not _NUMBER.fullmatch(raw) or int(raw) > MAX_INDEX:
        raise ValidationProblem(
            f"The {name} parameter must be a whole number from 0 to {MAX_INDEX}.", parameter=name
        )
    return int(raw)


def _beyond_tree(exc: tree.TreeError, session: Session) -> Problem:
    problem = Problem.of(
        404,
        "Not integrated yet",
        f"{exc}. Events are integrated within seconds; try again later.",
        tree_size=tree.tree_head(session).size,
    )
    problem.headers["Retry-After"] = "2"
    return problem


def _latest(session: Session) -> AuditCheckpoint:
    checkpoint = checkpoints.latest_checkpoint(session)
    if checkpoint is None:
        # A new log has signed nothing yet: sign the head now rather than answer "nothing".
        integrate(current_app._get_current_object(), max_batches=1)  # type: ignore[attr-defined]
        checkpoint = checkpoints.latest_checkpoint(session)
    if checkpoint is None:
        problem = Problem.of(503, "No checkpoint yet", "The log has not signed a checkpoint yet.")
        problem.headers["Retry-After"] = "2"
        raise problem
    return checkpoint


@bp.get("/checkpoint")
def checkpoint() -> ResponseReturnValue:
    """The latest signed tree head, a C2SP checkpoint (c2sp.org/tlog-checkpoint)."""
    latest = _latest(get_session())
    response = Response(latest.note, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/checkpoint-key")
def checkpoint_key() -> ResponseReturnValue:
    """The verifier key of the checkpoint signer (c2sp.org/signed-note), one line."""
    session = get_session()
    config = current_app.config
    row = checkpoints.ensure_key(
        session, config["KEY_ENCRYPTION_KEY_BYTES"], checkpoints.log_origin(config)
    )
    return Response(checkpoints.verifier(row).vkey() + "\n", mimetype="text/plain")


@bp.get("/proofs/inclusion")
def inclusion() -> ResponseReturnValue:
    """RFC 9162 section 2.1.3 inclusion proof of leaf ``index`` in the tree of ``size``."""
    index = _number("index")
    size = _number("size", required=False)
    session = get_session()
    if size is None:
        size = _latest(session).tree_size
    assert index is not None
    if index >= size:
        raise ValidationProblem(
            f"The index must be smaller than the tree size ({size}).", parameter="index"
        )
    try:
        found = tree.inclusion(session, index, size)
    except tree.TreeError as exc:
        raise _beyond_tree(exc, session) from None
    return jsonify(
        index=index,
        tree_size=size,
        leaf_hash=_b64(found.leaf_hash),
        root_hash=_b64(found.root_hash),
        proof=[_b64(h) for h in found.proof],
    )


@bp.get("/proofs/consistency")
def consistency() -> ResponseReturnValue:
    """RFC 9162 section 2.1.4 consistency proof between tree sizes ``from`` and ``to``."""
    old = _number("from")
    new = _number("to")
    assert old is not None and new is not None
    if not 0 < old <= new:
        raise ValidationProblem("The sizes must satisfy 0 < from <= to.", parameter="from")
    session = get_session()
    try:
        found = tree.consistency(session, old, new)
    except tree.TreeError as exc:
        raise _beyond_tree(exc, session) from None
    return jsonify(
        **{"from": old, "to": new},
        from_root_hash=_b64(found.old_root),
        to_root_hash=_b64(found.new_root),
        proof=[_b64(h) for h in found.proof],
    )


def _query(paged: bool = True) -> tuple[search.EventQuery, Any]:
    session = get_session()
    try:
        query = search.parse_query(request.args, paged=paged)
        return query, search.resolve_person(session, query)
    except search.QueryError as exc:
        raise ValidationProblem(str(exc).capitalize() + ".", parameter=exc.parameter) from None


def _record_access(
    auditor: Auditor, kind: str, query: search.EventQuery, person: Any
) -> search.EventQuery:
    """The auditor's own access, appended and committed before any event is shown; the query
    then sees the log as it was just before it."""
    session = get_session()
    record = audit.make_record(
        kind,
        g.get("correlation_id"),
        audit.event_time(),
        client=auditor.client_id,
        officer=str(auditor.officer_id),
        requester=auditor.agency,
        person=str(person) if person else None,
        filters=query.describe(),
    )
    appended = audit.append(session, [record])
    session.commit()
    return dataclasses.replace(query, upto=appended[0].index)


@bp.get("/events")
def events() -> ResponseReturnValue:
    """Search the log, newest first, a page at a time (``cursor`` from ``next_cursor``)."""
    session = get_session()
    auditor = authenticate_auditor(session)
    query, person = _query()
    query = _record_access(auditor, "audit.search", query, person)
    page = search.search(session, query, person)
    return jsonify(
        events=[search.public_event(row) for row in page.events], next_cursor=page.next_cursor
    )


@bp.get("/stats")
def stats() -> ResponseReturnValue:
    """Counts over the same filters as the search, for the auditor's charts."""
    session = get_session()
    auditor = authenticate_auditor(session)
    query, person = _query(paged=False)
    query = _record_access(auditor, "audit.stats", query, person)
    return jsonify(search.stats(session, query, person))


@bp.get("/policy-versions/<version>")
def policy_version(version: str) -> ResponseReturnValue:
    """The files of a policy set that decided accesses (decision events name its version), to
    check against the hashes of its ``policy.loaded`` event and to read the agreement."""
    session = get_session()
    authenticate_auditor(session)
    row = policy_versions.find(session, version) if _VERSION.fullmatch(version) else None
    if row is None:
        raise Problem.of(
            404, "Unknown policy version", "No access was decided by a policy set of this version."
        )
    return jsonify(
        version=row.version, first_used_at=row.first_used_at.isoformat(), files=row.files
    )


@bp.get("/events/export")
def export() -> ResponseReturnValue:
    """Every matching event with its inclusion proof against the latest checkpoint."""
    session = get_session()
    auditor = authenticate_auditor(session)
    fmt = request.args.get("format", "jsonl")
    if fmt not in EXPORT_FORMATS:
        raise ValidationProblem("The format is csv or jsonl.", parameter="format")
    query, person = _query(paged=False)
    query = _record_access(auditor, "audit.export", query, person)
    latest = _latest(session)
    stored = (latest.tree_size, latest.root_hash, latest.note)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rows = _export_rows(app, query, person, stored[0])
    body = _jsonl(rows, stored) if fmt == "jsonl" else _csv(rows, stored[0])
    response = Response(stream_with_context(body), mimetype=EXPORT_FORMATS[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="audit-export.{fmt}"'
    response.headers["Audit-Checkpoint"] = base64.b64encode(stored[2].encode()).decode()
    return response


def _export_rows(
    app: Any, query: search.EventQuery, person: Any, size: int
) -> Iterator[tuple[dict[str, Any], list[str] | None]]:
    """Events and their proofs, chunk by chunk, on a session of their own (the stream outlives
    the request's)."""
    with get_db(app).sessionmaker() as session:
        for chunk in search.iterate(session, query, person):
            provable = [row.seq for row in chunk if row.seq < size]
            proofs = _proofs(session, provable, size)
            for row in chunk:
                proof = proofs.get(row.seq)
                yield search.public_event(row), proof


def _proofs(session: Session, indexes: list[int], size: int) -> dict[int, list[str]]:
    """Inclusion proofs of many leaves with one read of the nodes they share."""
    if not indexes:
        return {}
    shapes = {i: [merkle.subtrees(*r) for r in merkle.inclusion_ranges(i, size)] for i in indexes}
    nodes = {node for shape in shapes.values() for pieces in shape for node in pieces}
    stored = tree.read_nodes(session, nodes)
    return {
        i: [_b64(merkle.fold([stored[n] for n in pieces])) for pieces in shape]
        for i, shape in shapes.items()
    }


def _jsonl(
    rows: Iterator[tuple[dict[str, Any], list[str] | None]], stored: tuple[int, bytes, str]
) -> Iterator[str]:
    size, root, note_text = stored
    head = {"type": "checkpoint", "tree_size": size, "root_hash": _b64(root), "note": note_text}
    yield json.dumps(head) + "\n"
    for event, proof in rows:
        event["type"] = "event"
        event["inclusion"] = None if proof is None else {"tree_size": size, "proof": proof}
        yield json.dumps(event, ensure_ascii=False) + "\n"


CSV_COLUMNS = [
    "index",
    "time",
    "kind",
    "decision",
    "requester",
    "provider",
    "client",
    "officer",
    "purpose",
    "category",
    "correlation_id",
    "leaf_hash",
    "pruned",
    "record",
    "tree_size",
    "proof",
]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Neutralise text a spreadsheet would run as a formula (OWASP CSV injection)."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in _FORMULA_STARTS:
        return "'" + value
    return value


def _csv(rows: Iterator[tuple[dict[str, Any], list[str] | None]], size: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for event, proof in rows:
        event["record"] = "" if event["record"] is None else json.dumps(event["record"])
        event["proof"] = "" if proof is None else " ".join(proof)
        event["tree_size"] = "" if proof is None else size
        writer.writerow([_cell(event[c]) for c in CSV_COLUMNS])
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
