"""Signing key rotation, publish-before-sign."""

from __future__ import annotations

from datetime import timedelta

from jose import jwt as jose_jwt
from oidc_helpers import RelyingParty, run_code_flow, seed
from sqlalchemy import select, update

from audit.models import AuditEvent
from identity.keys import PUBLISH_BEFORE_SIGN
from identity.models import SigningKey


def _age_next_key(db_session) -> None:
    rows = db_session.scalars(select(SigningKey).where(SigningKey.status == "next")).all()
    for row in rows:
        db_session.execute(
            update(SigningKey)
            .where(SigningKey.kid == row.kid)
            .values(created_at=row.created_at - PUBLISH_BEFORE_SIGN - timedelta(seconds=1))
        )
    db_session.commit()


def test_rotation_publishes_before_signing_and_keeps_the_old_key(app, client, db_session):
    world = seed(app)
    rp = RelyingParty(client, "rp", world.keys["rp"])
    old_token = rp.token(run_code_flow(client, rp)["code"]).get_json()["id_token"]
    old_kid = jose_jwt.get_unverified_header(old_token)["kid"]
    runner = app.test_cli_runner()

    first = runner.invoke(args=["keys", "rotate"])
    assert first.exit_code == 0 and "published" in first.output, first.output
    kids = [k["kid"] for k in client.get("/jwks.json").get_json()["keys"]]
    assert old_kid in kids and len(kids) == 2
    new_kid = next(k for k in kids if k != old_kid)
    same = rp.token(run_code_flow(client, rp)["code"]).get_json()["id_token"]
    assert jose_jwt.get_unverified_header(same)["kid"] == old_kid  # not signing yet

    early = runner.invoke(args=["keys", "rotate"])
    assert "can sign in" in early.output

    _age_next_key(db_session)
    second = runner.invoke(args=["keys", "rotate"])
    assert second.exit_code == 0 and "now signs" in second.output, second.output
    fresh = rp.token(run_code_flow(client, rp)["code"]).get_json()["id_token"]
    assert jose_jwt.get_unverified_header(fresh)["kid"] == new_kid
    jwks = client.get("/jwks.json").get_json()
    assert {old_kid, new_kid} <= {k["kid"] for k in jwks["keys"]}
    jose_jwt.decode(
        old_token,
        next(k for k in jwks["keys"] if k["kid"] == old_kid),
        algorithms=["ES256"],
        audience="rp",
        options={"verify_exp": False},
    )

    db_session.execute(
        update(SigningKey)
        .where(SigningKey.kid == old_kid)
        .values(retire_after=SigningKey.created_at)
    )
    db_session.commit()
    third = runner.invoke(args=["keys", "rotate"])
    assert third.exit_code == 0
    kids = {k["kid"] for k in client.get("/jwks.json").get_json()["keys"]}
    assert old_kid not in kids and new_kid in kids
    kinds = list(db_session.scalars(select(AuditEvent.kind)))
    assert "key.published" in kinds and "key.rotated" in kinds

    listing = runner.invoke(args=["keys", "list"])
    assert new_kid[:8] in listing.output


def test_demo_desk_clients(app, tmp_path):
    import json

    from broker.models import Agency
    from identity.demo import seed_people_clients
    from identity.models import Client

    with app.extensions["casebroker.db"].session() as session:
        session.add(Agency(id="tax", name="Tax", sector="test"))
        session.flush()
        files = seed_people_clients(session, tmp_path, "https://broker.test")
    assert set(files) == {"tax-desk"}
    document = json.loads(files["tax-desk"].read_text())
    assert document["key"]["d"] and (files["tax-desk"].stat().st_mode & 0o777) == 0o600
    with app.extensions["casebroker.db"].session() as session:
        again = seed_people_clients(session, tmp_path, "https://broker.test")
        client = session.get(Client, "tax-desk")
        assert client.is_fapi and client.subject_type == "pairwise"
    assert json.loads(again["tax-desk"].read_text()) == document


def test_clients_add_registers_a_fapi_code_flow_client(app, tmp_path):
    import json

    from identity_helpers import new_key

    from broker.models import Agency
    from identity.models import Client

    key = new_key()
    jwks_file = tmp_path / "desk.jwks.json"
    jwks_file.write_text(json.dumps(key.as_dict(private=False)))
    with app.extensions["casebroker.db"].session() as session:
        session.add(Agency(id="health", name="Health", sector="test"))
    runner = app.test_cli_runner()
    base = ["clients", "add", "desk", "--agency", "health", "--name", "Desk", "--jwks"]
    result = runner.invoke(
        args=[
            *base,
            str(jwks_file),
            "--scope",
            "openid profile lookup",
            "--redirect-uri",
            "https://desk.example/cb",
            "--subject-type",
            "pairwise",
            "--id-token-alg",
            "PS256",
        ]
    )
    assert result.exit_code == 0, result.output
    with app.extensions["casebroker.db"].sessionmaker() as session:
        client = session.get(Client, "desk")
        assert client.is_fapi and client.redirect_uris == ["https://desk.example/cb"]
        assert client.grant_types == ["authorization_code", "refresh_token"]
        assert (client.subject_type, client.id_token_signed_response_alg) == ("pairwise", "PS256")
    other = ["clients", "add", "desk2", "--agency", "health", "--name", "Desk 2", "--jwks"]
    bad = runner.invoke(args=[*other, str(jwks_file), "--redirect-uri", "http://desk.example/cb"])
    assert bad.exit_code != 0 and "https" in bad.output
    listing = runner.invoke(args=["clients", "list"])
    assert "desk" in listing.output and "yes" in listing.output
