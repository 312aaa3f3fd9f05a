"""The token endpoint: client_credentials with private_key_jwt, through HTTP.

Issued tokens are verified with python-jose, a JOSE library other than the one that signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from click.testing import CliRunner
from identity_helpers import add_client, assertion, new_key, token_form
from jose import jwt as jose_jwt
from sqlalchemy import select, update

from broker.agency_client import ClientKey, fetch_token
from broker.models import Agency
from identity.clients import register_client
from identity.keys import SigningKeyUnavailable, load_private
from identity.models import ClientKey as ClientKeyRow
from identity.models import ReplayGuard, SigningKey
from identity.tokens import InvalidToken, verify_access_token

ISSUER = "https://broker.test"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def post_token(client, form):
    return client.post("/token", data=form)


def verify_with_jose(client, access_token: str) -> dict:
    jwks = client.get("/jwks.json").json
    header = jose_jwt.get_unverified_header(access_token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    return jose_jwt.decode(
        access_token, key, algorithms=["ES256"], audience=ISSUER + "/exchange/v1", issuer=ISSUER
    )


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
def test_client_credentials_with_private_key_jwt(app, client, alg):
    key = add_client(app, alg=alg)
    response = post_token(client, token_form(assertion(key)))
    assert response.status_code == 200, response.json
    body = response.json
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert body["scope"] == "lookup"
    assert response.headers["Cache-Control"] == "no-store"

    header = jose_jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    claims = verify_with_jose(client, body["access_token"])
    assert claims["sub"] == claims["client_id"] == "tax-cms"
    assert claims["agency"] == "tax" and claims["scope"] == "lookup"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]


@pytest.mark.parametrize("change", ["key withdrawn", "jti revoked"])
def test_a_token_accepted_before_is_refused_once_its_key_or_itself_is_withdrawn(
    app, client, change
):
    """The parse and the signature check are memoised per token; what can change is not."""
    access_token = post_token(client, token_form(assertion(add_client(app)))).json["access_token"]
    sessions = app.extensions["casebroker.db"].sessionmaker
    audience = ISSUER + "/exchange/v1"
    for _ in range(2):  # the second call is served from the memo
        with sessions() as session:
            assert verify_access_token(session, access_token, ISSUER, audience, "lookup").jti
    claims = jose_jwt.get_unverified_claims(access_token)
    kid = jose_jwt.get_unverified_header(access_token)["kid"]
    with sessions() as session, session.begin():
        if change == "key withdrawn":
            session.execute(
                update(SigningKey).where(SigningKey.kid == kid).values(status="retired")
            )
        else:
            expires = datetime.fromtimestamp(claims["exp"], UTC)
            session.add(
                ReplayGuard(namespace="revoked_at", value=claims["jti"], expires_at=expires)
            )
    with sessions() as session, pytest.raises(InvalidToken):
        verify_access_token(session, access_token, ISSUER, audience, "lookup")


def test_audience_may_be_the_token_endpoint(app, client):
    key = add_client(app)
    response = post_token(client, token_form(assertion(key, aud=ISSUER + "/token")))
    assert response.status_code == 200, response.json


def error_of(response) -> str:
    assert response.mimetype == "application/json"
    assert response.status_code in (400, 401)
    return response.json["error"]


def test_alg_none_is_refused(app, client):
    add_client(app)
    now = int(time.time())
    header = b64(json.dumps({"alg": "none"}).encode())
    payload = b64(
        json.dumps(
            {"iss": "tax-cms", "sub": "tax-cms", "aud": ISSUER, "exp": now + 60, "jti": "n1"}
        ).encode()
    )
    assert error_of(post_token(client, token_form(f"{header}.{payload}."))) == "invalid_client"


def test_hs256_signed_with_the_public_key_is_refused(app, client):
    key = add_client(app)
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "kid": key.kid}).encode())
    payload = b64(
        json.dumps(
            {"iss": "tax-cms", "sub": "tax-cms", "aud": ISSUER, "exp": now + 60, "jti": "h1"}
        ).encode()
    )
    secret = json.dumps(key.as_dict(private=False)).encode()
    signature = b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    signed = f"{header}.{payload}.{signature}"
    assert error_of(post_token(client, token_form(signed))) == "invalid_client"


def test_rs256_is_refused(app, client):
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048)
    key.ensure_kid()
    add_client(app, key=key)
    signed = assertion(key, alg="RS256")
    assert error_of(post_token(client, token_form(signed))) == "invalid_client"


@dataclass(frozen=True)
class In:
    """A time this many seconds from when the test runs: parameters are made at collection,
    which may be minutes earlier on a busy run."""

    seconds: int


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"aud": "https://elsewhere.test"}, "wrong audience"),
        ({"aud": None}, "no audience"),
        ({"exp": In(-600), "iat": In(-660)}, "expired"),
        ({"exp": In(3600)}, "lives too long"),
        ({"iat": In(600), "exp": In(660)}, "issued in the future"),
        ({"exp": None}, "no exp"),
        ({"exp": "soon"}, "exp not a number"),
        ({"iss": "health-cms"}, "iss differs from sub"),
        ({"jti": None}, "no jti"),
        ({"jti": "x" * 300}, "oversized jti"),
        ({"nbf": In(600)}, "not yet valid"),
    ],
)
def test_bad_assertion_claims_are_refused(app, client, overrides, why):
    now = int(time.time())
    overrides = {k: now + v.seconds if isinstance(v, In) else v for k, v in overrides.items()}
    key = add_client(app)
    response = post_token(client, token_form(assertion(key, **overrides)))
    assert error_of(response) == "invalid_client", why


def test_signature_by_another_key_is_refused(app, client):
    registered = add_client(app)
    stranger = new_key()
    stranger_dict = stranger.as_dict(private=True)
    stranger_dict["kid"] = registered.kid
    from joserfc.jwk import ECKey

    forged = ECKey.import_key(stranger_dict)
    assert error_of(post_token(client, token_form(assertion(forged)))) == "invalid_client"


@pytest.mark.parametrize(
    "signed",
    ["garbage", "a.b.c", "", "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.c2ln", "x" * 10000],
)
def test_malformed_assertion_is_refused(app, client, signed):
    add_client(app)
    response = post_token(client, token_form(signed))
    assert response.status_code in (400, 401)
    assert response.json["error"] in ("invalid_client", "invalid_request")


def test_replayed_jti_is_refused(app, client):
    key = add_client(app)
    signed = assertion(key)
    assert post_token(client, token_form(signed)).status_code == 200
    assert error_of(post_token(client, token_form(signed))) == "invalid_client"


def test_an_assertion_spent_by_a_refused_request_stays_spent(app, client):
    """The burn is committed on its own connection: a request refused after it (here for a
    scope the client does not hold) does not give the assertion back."""
    key = add_client(app)
    signed = assertion(key)
    refused = post_token(client, token_form(signed, scope="lookup audit.admin"))
    assert error_of(refused) == "invalid_scope"
    assert error_of(post_token(client, token_form(signed))) == "invalid_client"
    with app.app_context():
        session = app.extensions["casebroker.db"].sessionmaker()
        burned = session.scalars(select(ReplayGuard.namespace)).all()
        session.close()
    assert burned.count("client_assertion") == 1


def test_replay_is_refused_by_another_app_instance(make_app):
    first, second = make_app(), make_app()
    key = add_client(first)
    signed = assertion(key)
    assert first.test_client().post("/token", data=token_form(signed)).status_code == 200
    replay = second.test_client().post("/token", data=token_form(signed))
    assert error_of(replay) == "invalid_client"


def test_unknown_and_disabled_clients_are_refused(app, client):
    key = add_client(app, status="disabled")
    assert error_of(post_token(client, token_form(assertion(key)))) == "invalid_client"
    stranger = new_key()
    signed = assertion(stranger, client_id="nobody")
    assert error_of(post_token(client, token_form(signed))) == "invalid_client"


def test_a_suspended_agency_or_disabled_key_cannot_authenticate_any_active_key_can(app, client):
    first, second = new_key(), new_key()
    with app.extensions["casebroker.db"].session() as session:
        session.add(Agency(id="tax", name="Tax", sector="test"))
        jwks = [first.as_dict(private=False), second.as_dict(private=False)]
        register_client(session, "tax-cms", "tax", "Tax CMS", jwks)
    for key in (first, second):
        assert post_token(client, token_form(assertion(key))).status_code == 200

    with app.extensions["casebroker.db"].session() as session:
        session.execute(
            update(ClientKeyRow).where(ClientKeyRow.kid == second.kid).values(status="disabled")
        )
    assert error_of(post_token(client, token_form(assertion(second)))) == "invalid_client"
    assert post_token(client, token_form(assertion(first))).status_code == 200

    with app.extensions["casebroker.db"].session() as session:
        session.execute(update(Agency).where(Agency.id == "tax").values(status="suspended"))
    assert error_of(post_token(client, token_form(assertion(first)))) == "invalid_client"


def test_unsupported_grant_and_missing_parameters(app, client):
    key = add_client(app)
    response = post_token(client, token_form(assertion(key), grant_type="password"))
    assert error_of(response) == "unsupported_grant_type"
    response = post_token(client, token_form(assertion(key), grant_type=None))
    assert error_of(response) in ("unsupported_grant_type", "invalid_request")
    response = post_token(client, {"grant_type": "client_credentials"})
    assert error_of(response) == "invalid_client"
    response = post_token(client, token_form(assertion(key), client_assertion_type="urn:bogus"))
    assert error_of(response) == "invalid_client"


def test_scope_outside_the_clients_is_refused(app, client):
    key = add_client(app)
    response = post_token(client, token_form(assertion(key), scope="admin"))
    assert error_of(response) == "invalid_scope"


def test_token_endpoint_rejects_get_and_oversized_bodies(app, client):
    add_client(app)
    response = client.get("/token")
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    response = client.post("/token", data={"client_assertion": "x" * 100_000})
    assert response.status_code == 413


def test_metadata_advertises_only_what_is_implemented(client):
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        meta = client.get(path).json
        assert meta["issuer"] == ISSUER
        assert meta["token_endpoint"] == ISSUER + "/token"
        assert meta["jwks_uri"] == ISSUER + "/jwks.json"
        assert meta["grant_types_supported"] == [
            "authorization_code",
            "refresh_token",
            "client_credentials",
        ]
        assert meta["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        algs = meta["token_endpoint_auth_signing_alg_values_supported"]
        assert "none" not in algs and not any(a.startswith("HS") for a in algs)
        assert "implicit" not in meta["grant_types_supported"]


def test_jwks_publishes_public_keys_only(client):
    keys = client.get("/jwks.json").json["keys"]
    assert len(keys) == 1
    assert keys[0]["alg"] == "ES256" and keys[0]["kid"]
    assert not {"d", "p", "q", "k"} & set(keys[0])


def test_signing_keys_are_encrypted_at_rest(app, client, db_session):
    client.get("/jwks.json")
    row = db_session.scalars(select(SigningKey)).one()
    loaded = load_private(app.config["KEY_ENCRYPTION_KEY_BYTES"], row)
    private_d = base64.urlsafe_b64decode(loaded.key.as_dict(private=True)["d"] + "==")
    assert private_d not in row.private_key_encrypted
    with pytest.raises(SigningKeyUnavailable):
        load_private(b"\x01" * 32, row)


def test_two_instances_agree_on_the_first_signing_key(make_app):
    first, second = make_app(), make_app()
    a = first.test_client().get("/jwks.json").json
    b = second.test_client().get("/jwks.json").json
    assert a == b and len(a["keys"]) == 1


def test_agency_client_library_gets_a_token(app):
    key = add_client(app)
    client_key = ClientKey("tax-cms", ISSUER, key.as_dict(private=True))
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url=ISSUER) as http:
        body = fetch_token(client_key, ISSUER, http=http)
    assert body["token_type"] == "Bearer"
    with app.test_client() as client:
        assert verify_with_jose(client, body["access_token"])["agency"] == "tax"


def test_clients_commands(app, tmp_path):
    from broker.models import Agency

    with app.extensions["casebroker.db"].session() as session:
        session.add(Agency(id="health", name="Health", sector="health"))
    key = new_key()
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    runner = app.test_cli_runner()

    result = runner.invoke(
        args=[
            "clients",
            "add",
            "health-cms",
            "--agency",
            "health",
            "--name",
            "Health CMS",
            "--jwks",
            str(jwks_file),
            "--no-fapi",
        ]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=[
            "clients",
            "add",
            "health-cms",
            "--agency",
            "health",
            "--name",
            "again",
            "--jwks",
            str(jwks_file),
        ]
    )
    assert result.exit_code != 0 and "already exists" in result.output
    result = runner.invoke(
        args=["clients", "add", "x", "--agency", "nope", "--name", "x", "--jwks", str(jwks_file)]
    )
    assert result.exit_code != 0 and "unknown agency" in result.output

    listing = runner.invoke(args=["clients", "list"])
    assert "health-cms" in listing.output and key.kid[:8] in listing.output

    signed = assertion(key, client_id="health-cms")
    assert app.test_client().post("/token", data=token_form(signed)).status_code == 200
    assert runner.invoke(args=["clients", "disable", "health-cms"]).exit_code == 0
    again = app.test_client().post(
        "/token", data=token_form(assertion(key, client_id="health-cms"))
    )
    assert again.json["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"kty": "oct", "k": "c2VjcmV0"}, "EC (P-256), RSA"),
        ({"keys": []}, "no keys"),
        ({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, "invalid key"),
    ],
)
def test_clients_add_refuses_unfit_keys(app, tmp_path, document, message):
    jwks_file = tmp_path / "k.json"
    jwks_file.write_text(json.dumps(document))
    result = app.test_cli_runner().invoke(
        args=["clients", "add", "c", "--agency", "tax", "--name", "c", "--jwks", str(jwks_file)]
    )
    assert result.exit_code != 0 and message in result.output


def test_token_command_reports_bad_key_file(tmp_path):
    from broker.cli import cli

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = CliRunner().invoke(cli, ["token", "--client-key", str(bad)])
    assert result.exit_code != 0 and "not a client key file" in result.output
