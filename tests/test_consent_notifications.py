"""The notification outbox: written with what it reports, delivered at least once by SMTP or
to the portal, claimed safely by several workers, never lost when delivery fails."""

from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from conftest import ISSUER, TEST_KEK
from consent_world import make_consent_world
from flask.cli import ScriptInfo
from sqlalchemy import func, select

from broker.cli import cli
from consent import Actor, Terms, list_notifications, set_contact_email
from consent.models import Notification
from consent.notifications import (
    SmtpSender,
    SmtpSettings,
    claim,
    collect_break_glass,
    deliver_due,
)

VEHICLE = Terms("social-services", "benefit-eligibility", ("vehicle",), "vehicle-registry")
SOCIAL = Actor.agency("social-services", "social-services-cms")


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=default_policy))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def cw(app):
    return make_consent_world(app)


def settings(port: int) -> SmtpSettings:
    return SmtpSettings("127.0.0.1", port, "none", None, None, "broker@example.org", 5)


def ask(cw, session, index=0):
    ref, person_id = cw.person(index=index)
    consent, _ = cw.service(session).request(SOCIAL, ref["scheme"], ref["value"], VEHICLE, 30)
    return consent, person_id


def deliveries(session):
    session.expire_all()
    return {n.id: n.delivery for n in session.scalars(select(Notification))}


def test_a_request_notifies_and_without_smtp_it_goes_to_the_portal(cw):
    with cw.sessionmaker()() as session:
        _, person_id = ask(cw, session)
        (note,) = session.scalars(select(Notification)).all()
        assert note.kind == "consent.requested" and note.delivery == "pending"
        report = deliver_due(session, None)
        assert report.portal == 1 and report.sent == 0
        assert deliveries(session) == {note.id: "portal"}
        views = list_notifications(session, person_id)
        assert [v.kind for v in views] == ["consent.requested"]
        assert "Social Services" in views[0].text and "portail citoyen" in views[0].text


def test_smtp_delivery_reaches_the_citizen(cw, smtp):
    port, inbox = smtp
    with cw.sessionmaker()() as session:
        _, person_id = ask(cw, session)
        set_contact_email(session, person_id, "citizen@example.org")
        report = deliver_due(
            session,
            SmtpSender(settings(port)),
            sender_address="broker@example.org",
            portal_url="https://broker.test",
        )
        assert report.sent == 1
        (message,) = inbox.messages
        assert inbox.recipients == [["citizen@example.org"]]
        assert message["From"] == "broker@example.org"
        assert "Social Services" in message["Subject"]
        body = message.get_content()
        assert "Approve or decline" in body and "Acceptez ou refusez" in body
        assert "https://broker.test" in body
        (note,) = session.scalars(select(Notification)).all()
        assert note.delivery == "sent" and note.delivered_at and note.claimed_by is None
        assert deliver_due(session, SmtpSender(settings(port))).handled == 0
        assert len(inbox.messages) == 1


def test_a_failed_send_is_retried_later_and_never_lost(cw, smtp):
    port, inbox = smtp
    with cw.sessionmaker()() as session:
        _, person_id = ask(cw, session)
        set_contact_email(session, person_id, "citizen@example.org")
        down = SmtpSender(settings(free_port()))
        report = deliver_due(session, down, sender_address="broker@example.org")
        assert report.retried == 1 and report.sent == 0
        (note,) = session.scalars(select(Notification)).all()
        session.refresh(note)
        assert note.delivery == "pending" and note.attempts == 1 and note.last_error
        assert deliver_due(session, SmtpSender(settings(port))).handled == 0, "backing off"
        later = datetime.now(UTC) + timedelta(minutes=5)
        report = deliver_due(
            session, SmtpSender(settings(port)), sender_address="broker@example.org", now=later
        )
        assert report.sent == 1 and len(inbox.messages) == 1


def test_a_worker_that_dies_after_claiming_loses_its_lease(cw, smtp):
    port, inbox = smtp
    with cw.sessionmaker()() as session:
        _, person_id = ask(cw, session)
        set_contact_email(session, person_id, "citizen@example.org")
        now = datetime.now(UTC)
        assert len(claim(session, "dead-worker", now, 10)) == 1
        sender = SmtpSender(settings(port))
        assert deliver_due(session, sender, now=now).handled == 0
        report = deliver_due(
            session, sender, sender_address="b@example.org", now=now + timedelta(minutes=3)
        )
        assert report.sent == 1 and len(inbox.messages) == 1


def test_concurrent_workers_claim_disjoint_rows(cw):
    with cw.sessionmaker()() as session:
        for index in range(8):
            ask(cw, session, index=index)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(3)

    def worker(name: str) -> None:
        with cw.sessionmaker()() as session:
            barrier.wait()
            claimed[name] = claim(session, name, datetime.now(UTC), 5)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [i for ids in claimed.values() for i in ids]
    assert len(everything) == len(set(everything)) == 8, claimed


def test_break_glass_access_is_notified_once(cw):
    ref, person_id = cw.person()
    body = {
        "person": ref,
        "categories": ["health.summary"],
        "purpose": "child-protection",
        "justification": "Child at immediate risk, case 2026-114.",
        "break_glass": True,
    }
    response = cw.lookup(body)
    assert response.status_code == 200, response.json
    statuses = {r["category"]: r["status"] for r in response.json["results"]}
    assert statuses["health.summary"] != "denied", response.json
    plain = cw.lookup({"person": ref, "categories": ["address"], "purpose": "benefit-eligibility"})
    assert plain.status_code == 200
    with cw.sessionmaker()() as session:
        assert collect_break_glass(session) == 1
        session.commit()
        assert collect_break_glass(session) == 0
        session.commit()
        (note,) = session.scalars(select(Notification)).all()
        assert note.person_id == person_id and note.kind == "access.break_glass"
        assert note.payload["requester"] == "social-services"
        assert note.payload["access"] == [{"provider": "health", "category": "health.summary"}]
        assert "Child at immediate risk" not in str(note.payload)
        views = list_notifications(session, person_id)
        assert "emergency" in views[0].text.lower()


def test_break_glass_is_visible_in_the_portal_without_a_worker(cw):
    ref, person_id = cw.person(index=1)
    cw.lookup(
        {
            "person": ref,
            "categories": ["health.summary"],
            "purpose": "child-protection",
            "justification": "Child at risk.",
            "break_glass": True,
        }
    )
    listed = cw.citizen("GET", "/consent/v1/me/notifications", person_id)
    assert [n["kind"] for n in listed.json["notifications"]] == ["access.break_glass"]


def test_deliver_command_and_sweep_command(cw, smtp, make_app):
    port, inbox = smtp
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_SECURITY="none")
    with cw.sessionmaker()() as session:
        _, first = ask(cw, session, index=0)
        ask(cw, session, index=1)
        set_contact_email(session, first, "first@example.org")
        svc = cw.service(session)
        svc.grant(first, VEHICLE, svc.now + timedelta(days=3))
    runner = CliRunner()
    info = ScriptInfo(create_app=lambda: app)
    swept = runner.invoke(cli, ["consent", "sweep"], obj=info)
    assert swept.exit_code == 0 and "queued 1 expiry notices" in swept.output
    result = runner.invoke(cli, ["notifications", "deliver"], obj=info)
    assert result.exit_code == 0, result.output
    assert "sent 2, to the portal 1" in result.output
    assert sorted(m["Subject"].split(" / ")[0][:9] for m in inbox.messages) == [
        "Social Se",
        "Your cons",
    ]
    with cw.sessionmaker()() as session:
        pending = session.scalar(select(func.count()).where(Notification.delivery == "pending"))
        assert pending == 0


def test_invalid_smtp_security_stops_start_up(make_app):
    from broker.config import ConfigError

    with pytest.raises(ConfigError, match="SMTP_SECURITY"):
        make_app(SMTP_SECURITY="maybe")


def test_follow_worker_delivers_new_messages_and_stops_on_sigterm(cw, database_url, tmp_path):
    env = {
        **os.environ,
        "CASEBROKER_DATABASE_URL": database_url,
        "CASEBROKER_INSTANCE_PATH": str(tmp_path / "worker"),
        "CASEBROKER_KEY_ENCRYPTION_KEY": TEST_KEK,
        "CASEBROKER_SECRET_KEY": "test-secret-key-not-for-production",
        "CASEBROKER_ISSUER": ISSUER,
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", "from broker.cli import main; main()", "notifications",
         "deliver", "--follow", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        with cw.sessionmaker()() as session:
            ask(cw, session)
            # Wait for the delivery itself, however long a loaded machine takes to start the
            # worker; stop waiting only if the worker has died (the guard only stops a hang).
            hang_guard = time.monotonic() + 600
            while "portal" not in deliveries(session).values():
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < hang_guard, "the worker delivered nothing in 10 min"
                time.sleep(0.1)
            assert list(deliveries(session).values()) == ["portal"]
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert "to the portal 1" in out
