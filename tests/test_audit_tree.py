"""Integration into the Merkle tree, checkpoints per batch, and the public proof endpoints."""

from __future__ import annotations

import base64
import threading

import pytest
from audit_helpers import (
    append_events,
    execute,
    integrate,
    log_verifier,
    origin,
    run_cli,
    sessions,
)
from lookup_world import make_world
from sqlalchemy import event, func, select

import audit
from audit import checkpoints, merkle, note, tree
from audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode


def leaves_of(app) -> list[bytes]:
    with sessions(app) as session:
        return [bytes(h) for h in session.scalars(select(AuditEvent.leaf_hash).order_by("seq"))]


def latest_checkpoint(app) -> note.Checkpoint:
    text = app.test_client().get("/audit/v1/checkpoint").get_data(as_text=True)
    return note.open_checkpoint(text, [log_verifier(app)], origin(app))


def b64(values):
    return [base64.b64decode(v) for v in values]


def test_integration_builds_the_rfc9162_tree_of_the_appended_events(app):
    append_events(app, 13)
    assert integrate(app) == 13
    leaves = leaves_of(app)
    checkpoint = latest_checkpoint(app)
    assert checkpoint.size == 13
    assert checkpoint.root_hash == merkle.root_from_leaves(leaves)
    with sessions(app) as session:
        nodes = session.scalar(select(func.count()).select_from(AuditTreeNode))
    assert nodes == 13 + 6 + 3 + 1


def test_each_batch_commits_its_nodes_size_and_checkpoint_together(make_app):
    app = make_app(AUDIT_BATCH_SIZE=4)
    append_events(app, 10)
    integrate(app)
    with sessions(app) as session:
        rows = session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size)).all()
    assert [r.tree_size for r in rows] == [4, 8, 10]
    leaves = leaves_of(app)
    key = log_verifier(app)
    for row in rows:
        body = note.open_checkpoint(row.note, [key], origin(app))
        assert body.root_hash == merkle.root_from_leaves(leaves[: row.tree_size])


def test_nothing_pending_signs_nothing_new(app):
    append_events(app, 3)
    integrate(app)
    integrate(app)
    with sessions(app) as session:
        assert session.scalar(select(func.count()).select_from(AuditCheckpoint)) == 1


def test_an_integrator_dying_mid_batch_leaves_a_tree_the_next_one_continues(app, monkeypatch):
    append_events(app, 5)
    integrate(app)
    append_events(app, 6)

    def crash(*args, **kwargs):
        raise RuntimeError("power cut")

    monkeypatch.setattr(checkpoints, "sign_checkpoint", crash)
    with pytest.raises(RuntimeError):
        integrate(app)
    with sessions(app) as session:
        assert tree.tree_head(session).size == 5
        top = session.scalar(select(func.max(AuditTreeNode.idx)).where(AuditTreeNode.level == 0))
        assert top == 4
    monkeypatch.undo()
    assert integrate(app) == 11
    assert latest_checkpoint(app).root_hash == merkle.root_from_leaves(leaves_of(app))


def test_integration_stops_before_a_hole_in_the_sequence(app):
    append_events(app, 6)
    execute(app, "DELETE FROM audit_event WHERE seq = 3")
    assert integrate(app) == 3


def test_a_held_lock_makes_another_integrator_step_aside(app):
    append_events(app, 2)
    with sessions(app) as session:
        kek = app.config["KEY_ENCRYPTION_KEY_BYTES"]
        if session.get_bind().dialect.name == "postgresql":
            with app.extensions["casebroker.db"].engine.connect() as holder:
                holder.exec_driver_sql(f"SELECT pg_advisory_lock({tree.ADVISORY_LOCK_KEY})")
                assert tree.integrate_batch(session, kek, origin(app), 100) is None
                holder.exec_driver_sql(f"SELECT pg_advisory_unlock({tree.ADVISORY_LOCK_KEY})")
        with tree._local_lock:
            assert tree.integrate_batch(session, kek, origin(app), 100) is None
        assert tree.integrate_batch(session, kek, origin(app), 100).added == 2


def test_several_nodes_appending_and_integrating_at_once_keep_one_consistent_tree(make_app):
    nodes = [make_app(AUDIT_BATCH_SIZE=7) for _ in range(3)]
    errors: list[BaseException] = []

    def work(app, rounds):
        try:
            for _ in range(rounds):
                append_events(app, 3)
                integrate(app)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(app, 8)) for app in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    integrate(nodes[0])
    leaves = leaves_of(nodes[0])
    assert len(leaves) == 72
    assert latest_checkpoint(nodes[1]).root_hash == merkle.root_from_leaves(leaves)
    with sessions(nodes[2]) as session:
        sizes = list(session.scalars(select(AuditCheckpoint.tree_size)))
        for size in sizes:
            row = session.get(AuditCheckpoint, size)
            assert bytes(row.root_hash) == merkle.root_from_leaves(leaves[:size])


def test_opportunistic_integration_runs_after_the_response(make_app):
    app = make_app(AUDIT_INTEGRATE_INTERVAL=1)
    world = make_world(app, persons=4)
    body = {
        "person": world.identifier("social-services", 0),
        "categories": ["income"],
        "purpose": "benefit-eligibility",
    }
    response = world.lookup(body)
    assert response.status_code == 200
    response.close()
    with sessions(app) as session:
        assert tree.tree_head(session).size == len(leaves_of(app)) > 0


def test_a_lookup_decision_is_provably_in_the_log_once_integrated(make_app):
    app = make_app(AUDIT_INTEGRATE_INTERVAL=0)
    world = make_world(app, persons=4)
    body = {
        "person": world.identifier("social-services", 1),
        "categories": ["income", "vehicle"],
        "purpose": "benefit-eligibility",
    }
    results = world.lookup(body).json["results"]
    assert results
    probe = app.test_client().get(
        f"/audit/v1/proofs/inclusion?index={results[0]['audit']['index']}"
    )
    assert probe.status_code in (404, 200)
    integrate(app)
    checkpoint = latest_checkpoint(app)
    for result in results:
        index = result["audit"]["index"]
        leaf = bytes.fromhex(result["audit"]["leaf_hash"])
        response = app.test_client().get(
            f"/audit/v1/proofs/inclusion?index={index}&size={checkpoint.size}"
        )
        assert response.status_code == 200, response.json
        merkle.verify_inclusion(
            index, checkpoint.size, leaf, b64(response.json["proof"]), checkpoint.root_hash
        )


def test_inclusion_proofs_for_every_leaf_and_size_verify(make_app):
    app = make_app(AUDIT_BATCH_SIZE=5)
    append_events(app, 19)
    integrate(app)
    leaves = leaves_of(app)
    client = app.test_client()
    for size in (1, 5, 10, 15, 19):
        for index in range(size):
            answer = client.get(f"/audit/v1/proofs/inclusion?index={index}&size={size}").json
            assert base64.b64decode(answer["leaf_hash"]) == leaves[index]
            root = base64.b64decode(answer["root_hash"])
            assert root == merkle.root_from_leaves(leaves[:size])
            merkle.verify_inclusion(index, size, leaves[index], b64(answer["proof"]), root)
    default = client.get("/audit/v1/proofs/inclusion?index=3").json
    assert default["tree_size"] == 19


def test_consistency_proofs_between_checkpoints_verify(make_app):
    app = make_app(AUDIT_BATCH_SIZE=3)
    append_events(app, 17)
    integrate(app)
    with sessions(app) as session:
        sizes = sorted(session.scalars(select(AuditCheckpoint.tree_size)))
        roots = {s: bytes(session.get(AuditCheckpoint, s).root_hash) for s in sizes}
    client = app.test_client()
    for old in sizes:
        for new in sizes:
            if old > new:
                continue
            answer = client.get(f"/audit/v1/proofs/consistency?from={old}&to={new}").json
            merkle.verify_consistency(old, new, roots[old], roots[new], b64(answer["proof"]))


def test_a_proof_takes_a_bounded_number_of_queries(make_app):
    app = make_app(AUDIT_BATCH_SIZE=1000)
    append_events(app, 1000)
    integrate(app)
    statements: list[str] = []
    engine = app.extensions["casebroker.db"].engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        with sessions(app) as session:
            proof = tree.inclusion_proof(session, 637, 999)
            consistency = tree.consistency_proof(session, 300, 999)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len(proof) == 10 and len(consistency) <= 2 * 10
    assert len(statements) <= 4, statements


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 422),
        ("index=", 422),
        ("index=abc", 422),
        ("index=-1", 422),
        ("index=1.5", 422),
        ("index=99999999999999999999", 422),
        ("index=0x1", 422),
        ("index=1%00", 422),
        ("index=3&size=3", 422),
        ("index=0&size=0", 422),
        ("index=0&size=4000", 404),
        ("index=' OR 1=1 --", 422),
    ],
)
def test_bad_inclusion_requests_get_problem_details(app, query, status):
    append_events(app, 3)
    integrate(app)
    response = app.test_client().get(f"/audit/v1/proofs/inclusion?{query}")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    if status == 404:
        assert response.json["tree_size"] == 3 and response.headers["Retry-After"]


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 422),
        ("from=1", 422),
        ("to=2", 422),
        ("from=0&to=2", 422),
        ("from=3&to=2", 422),
        ("from=a&to=2", 422),
        ("from=1&to=9", 404),
    ],
)
def test_bad_consistency_requests_get_problem_details(app, query, status):
    append_events(app, 3)
    integrate(app)
    response = app.test_client().get(f"/audit/v1/proofs/consistency?{query}")
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"


def test_appending_never_touches_the_tree(app):
    append_events(app, 4)
    with sessions(app) as session:
        assert session.scalar(select(func.count()).select_from(AuditTreeNode)) == 0
        assert tree.pending(session) == 4


def test_a_rolled_back_batch_does_not_reuse_its_numbers_in_the_tree(app):
    with sessions(app) as session:
        audit.append(session, [audit.make_record("x", None, audit.event_time())])
        session.rollback()
    append_events(app, 2)
    assert integrate(app) == 2


def test_integrate_and_checkpoint_commands(app):
    assert run_cli(app, "checkpoint").exit_code == 1
    append_events(app, 4)
    result = run_cli(app, "integrate")
    assert result.exit_code == 0 and "integrated 4 events; tree size 4" in result.output
    shown = run_cli(app, "checkpoint")
    assert shown.exit_code == 0
    assert note.open_checkpoint(shown.output, [log_verifier(app)], origin(app)).size == 4


def test_a_racing_integrator_that_loses_steps_aside(app, monkeypatch):
    """Without the lock (two SQLite processes), the later writer fails its batch, no fork."""
    append_events(app, 2)
    integrate(app)
    append_events(app, 3)
    monkeypatch.setattr(tree, "_try_lock", lambda session: True)
    kek = app.config["KEY_ENCRYPTION_KEY_BYTES"]
    original = tree._insert_nodes

    def interleaved(session, nodes):
        monkeypatch.setattr(tree, "_insert_nodes", original)
        tree._local_lock.release()
        try:
            with sessions(app) as other:  # the other integrator gets there first
                assert tree.integrate_batch(other, kek, origin(app), 100).added == 3
        finally:
            tree._local_lock.acquire()
        original(session, nodes)

    monkeypatch.setattr(tree, "_insert_nodes", interleaved)
    with sessions(app) as first:
        assert tree.integrate_batch(first, kek, origin(app), 100) is None
    assert latest_checkpoint(app).size == integrate(app) == 5
    assert latest_checkpoint(app).root_hash == merkle.root_from_leaves(leaves_of(app))
