"""Demo consents: seeded through the service, so they are real; seeding again adds nothing."""

from __future__ import annotations

from lookup_world import make_world
from sqlalchemy import func, select

from audit.models import AuditEvent
from consent import ConsentSettings, seed_demo_consents, verify_receipt
from consent.models import Consent, Notification
from identity.keys import published_jwks
from identity.models import Account, Client


def test_demo_has_pending_active_and_revoked_consents(app):
    make_world(app, persons=8)
    settings = ConsentSettings.from_config(app.config)
    with app.extensions["casebroker.db"].sessionmaker() as session:
        made = seed_demo_consents(session, settings, persons=2)
        assert made.persons == 3
        assert len(made.requested) == len(made.active) == len(made.revoked) == 3
        statuses = dict(
            session.execute(select(Consent.status, func.count()).group_by(Consent.status)).all()
        )
        assert statuses == {"requested": 3, "active": 3, "revoked": 3}
        citizen = session.scalar(select(Account.person_id).where(Account.username == "citizen"))
        mine = session.scalars(select(Consent).where(Consent.person_id == citizen)).all()
        assert sorted(c.status for c in mine) == ["active", "requested", "revoked"]
        keys = published_jwks(session)
        for consent in mine:
            if consent.receipt_jws:
                verify_receipt(consent.receipt_jws, keys)
        kinds = session.scalars(select(AuditEvent.kind).where(AuditEvent.kind.like("consent.%")))
        assert sorted(set(kinds)) == [
            "consent.granted",
            "consent.requested",
            "consent.revoked",
        ]
        assert session.scalar(select(func.count()).select_from(Notification)) == 6
        machine = select(Client).where(Client.id.like("%-cms"))
        assert all("consent" in c.scope.split() for c in session.scalars(machine))

        again = seed_demo_consents(session, settings, persons=2)
        assert again.persons == 0
        assert session.scalar(select(func.count()).select_from(Consent)) == 9
