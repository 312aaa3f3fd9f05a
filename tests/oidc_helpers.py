"""A relying party for tests, built on oauthlib (not Authlib) and python-jose.

oauthlib's ``WebApplicationClient`` prepares the authorization request (PKCE S256) and the
token request and parses the responses; python-jose builds DPoP proofs and verifies ID tokens
against the published JWKS, so the provider is checked by code that does not share its JOSE
library.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from argon2 import PasswordHasher
from identity_helpers import ASSERTION_TYPE, assertion, new_key
from jose import jwk as jose_jwk
from jose import jws as jose_jws
from jose import jwt as jose_jwt
from oauthlib.oauth2 import WebApplicationClient

from broker.models import Agency
from identity.clients import register_client
from identity.models import Account, Officer, OfficerRole, Person

ISSUER = "https://broker.test"
REDIRECT = "https://rp.example/cb"
CITIZEN_PASSWORD = "citizen-password-1"
OFFICER_PASSWORD = "officer-password-1"


@dataclass
class World:
    citizen_id: uuid.UUID
    officer_id: uuid.UUID
    keys: dict[str, Any] = field(default_factory=dict)


def seed(app, fapi: bool = True, **client_options: Any) -> World:
    """An agency, a citizen and an officer with passwords, and an RP client ``rp``."""
    hasher = PasswordHasher()
    world = World(uuid.uuid4(), uuid.uuid4())
    key = new_key("ES256")
    with app.extensions["casebroker.db"].session() as session:
        session.add(Agency(id="social", name="Social", sector="test"))
        session.add(Agency(id="tax", name="Tax", sector="test"))
        session.flush()
        person = Person(given_name="Ada", family_name="Lovelace")
        session.add(person)
        officer = Officer(
            id=world.officer_id,
            agency_id="social",
            display_name="Claire Martin",
            roles=[OfficerRole(role="caseworker"), OfficerRole(role="auditor")],
        )
        session.add(officer)
        session.flush()
        session.add(
            Account(
                id=world.citizen_id,
                username="citizen",
                password_hash=hasher.hash(CITIZEN_PASSWORD),
                kind="citizen",
                person_id=person.id,
            )
        )
        session.add(
            Account(
                id=world.officer_id,
                username="officer",
                password_hash=hasher.hash(OFFICER_PASSWORD),
                kind="officer",
                officer_id=officer.id,
            )
        )
        options = {
            "scope": "openid profile lookup",
            "is_fapi": fapi,
            "redirect_uris": [REDIRECT, "http://127.0.0.1:8765/cb"],
            "post_logout_redirect_uris": ["https://rp.example/bye"],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        }
        options.update(client_options)
        register_client(
            session, "rp", "social", "Social Case System", [key.as_dict(private=False)], **options
        )
    world.keys["rp"] = key
    return world


def add_rp(app, client_id: str, agency: str = "social", **options: Any):
    key = new_key(options.pop("alg", "ES256"))
    defaults = {
        "scope": "openid profile lookup",
        "is_fapi": True,
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
    }
    defaults.update(options)
    with app.extensions["casebroker.db"].session() as session:
        register_client(
            session, client_id, agency, client_id, [key.as_dict(private=False)], **defaults
        )
    return key


class DPoPKey:
    """An EC P-256 DPoP key handled with python-jose."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.private = ec.generate_private_key(ec.SECP256R1())
        self.jwk = jose_jwk.construct(self.private, "ES256").public_key().to_dict()
        self.jwk = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.jwk.items()}
        self.jwk.pop("alg", None)

    def thumbprint(self) -> str:
        import base64
        import hashlib

        members = {k: self.jwk[k] for k in ("crv", "kty", "x", "y")}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()

    def proof(
        self,
        method: str,
        url: str,
        access_token: str | None = None,
        alg: str = "ES256",
        **overrides: Any,
    ) -> str:
        import base64
        import hashlib

        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if access_token:
            digest = hashlib.sha256(access_token.encode()).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        headers = {"typ": "dpop+jwt", "jwk": self.jwk}
        return jose_jws.sign(claims, self.private, headers=headers, algorithm=alg)


class RelyingParty:
    """Drives the code flow against a Flask test client, as a real RP would over HTTP."""

    def __init__(
        self, http, client_id: str, key, redirect_uri: str = REDIRECT, issuer: str = ISSUER
    ) -> None:
        self.http = http
        self.issuer = issuer
        self.client_id = client_id
        self.key = key
        self.redirect_uri = redirect_uri
        self.oauth = WebApplicationClient(client_id)
        self.dpop = DPoPKey()

    def client_assertion(self, aud: str | None = None, **overrides: Any) -> dict[str, str]:
        return {
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(
                self.key, self.client_id, aud=aud or self.issuer, **overrides
            ),
        }

    def authorization_params(self, scope: str = "openid profile", **extra: Any) -> dict[str, str]:
        verifier = self.oauth.create_code_verifier(64)
        challenge = self.oauth.create_code_challenge(verifier, "S256")
        self.state = secrets.token_urlsafe(12)
        self.nonce = secrets.token_urlsafe(12)
        uri = self.oauth.prepare_request_uri(
            ISSUER + "/authorize",  # only the parameters are kept
            redirect_uri=self.redirect_uri,
            scope=scope.split(),
            state=self.state,
            code_challenge=challenge,
            code_challenge_method="S256",
            nonce=self.nonce,
            **extra,
        )
        params = {k: v[0] for k, v in parse_qs(urlsplit(uri).query).items()}
        return {k: v for k, v in params.items() if v != "None"}

    def push(self, params: dict[str, str] | None = None, dpop: bool = True, **form: Any):
        body = dict(params if params is not None else self.authorization_params())
        body.update(self.client_assertion())
        body.update(form)
        headers = {}
        if dpop:
            headers["DPoP"] = self.dpop.proof("POST", self.issuer + "/par")
        return self.http.post("/par", data=body, headers=headers)

    def authorize_url(self, request_uri: str) -> str:
        return "/authorize?" + urlencode({"client_id": self.client_id, "request_uri": request_uri})

    def parse_callback(self, location: str) -> dict[str, str]:
        """oauthlib checks ``state``; the ``iss`` check (RFC 9207) is ours."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert query.get("iss") == self.issuer, query
        if "error" in query:
            return query
        self.oauth.parse_request_uri_response(location, state=self.state)
        return query

    def token(self, code: str, dpop: bool = True, verifier: str | None = None, **extra: Any):
        body = self.oauth.prepare_request_body(
            code=code,
            redirect_uri=self.redirect_uri,
            code_verifier=verifier or self.oauth.code_verifier,
            include_client_id=False,
        )
        form = {k: v[0] for k, v in parse_qs(body).items()}
        form.update(self.client_assertion())
        form.update(extra)
        headers = {"DPoP": self.dpop.proof("POST", self.issuer + "/token")} if dpop else {}
        return self.http.post("/token", data=form, headers=headers)

    def refresh(self, refresh_token: str, dpop_key: DPoPKey | None = None):
        body = self.oauth.prepare_refresh_body(refresh_token=refresh_token)
        form = {k: v[0] for k, v in parse_qs(body).items()}
        form.update(self.client_assertion())
        key = dpop_key or self.dpop
        return self.http.post(
            "/token", data=form, headers={"DPoP": key.proof("POST", self.issuer + "/token")}
        )

    def verify_id_token(self, id_token: str, jwks: dict[str, Any], alg: str = "ES256"):
        kid = jose_jwt.get_unverified_header(id_token)["kid"]
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        claims = jose_jwt.decode(
            id_token,
            key,
            algorithms=[alg],
            audience=self.client_id,
            issuer=self.issuer,
            options={"verify_at_hash": False},
        )
        assert claims["nonce"] == self.nonce
        return claims


def login(http, username: str = "citizen", password: str = CITIZEN_PASSWORD, next_url=None):
    page = http.get("/login")
    csrf = csrf_of(page.get_data(as_text=True))
    form = {"csrf_token": csrf, "username": username, "password": password}
    if next_url:
        form["next"] = next_url
    return http.post("/login", data=form)


def csrf_of(html: str) -> str:
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def run_code_flow(
    http, rp: RelyingParty, username="citizen", password=CITIZEN_PASSWORD, push_dpop=True, **kw
):
    """PAR -> authorize -> login -> consent -> callback; returns the callback query."""
    pushed = rp.push(rp.authorization_params(**kw), dpop=push_dpop)
    assert pushed.status_code == 201, pushed.get_json()
    response = http.get(rp.authorize_url(pushed.get_json()["request_uri"]))
    if response.status_code == 303 and "/login" in response.location:
        response = login(http, username, password, next_url=_next_of(response.location))
        response = http.get(response.location)
    if response.status_code == 200 and "consent" in response.get_data(as_text=True):
        html = response.get_data(as_text=True)
        action = html.split('action="')[-1].split('"')[0]
        response = http.post(action, data={"csrf_token": csrf_of(html), "decision": "allow"})
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return rp.parse_callback(response.location)


def _next_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["next"][0]


def verify_signature_with_cryptography(token: str, jwk: dict[str, Any]) -> dict[str, Any]:
    """PS256 and EdDSA, which python-jose lacks, checked with ``cryptography`` directly."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    def b64(value: str) -> bytes:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))

    header_b64, payload_b64, signature_b64 = token.split(".")
    signing_input = f"{header_b64}.{payload_b64}".encode()
    header = json.loads(b64(header_b64))
    if header["alg"] == "PS256":
        public = rsa.RSAPublicNumbers(
            int.from_bytes(b64(jwk["e"]), "big"), int.from_bytes(b64(jwk["n"]), "big")
        ).public_key()
        public.verify(
            b64(signature_b64),
            signing_input,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            hashes.SHA256(),
        )
    elif header["alg"] == "EdDSA":
        Ed25519PublicKey.from_public_bytes(b64(jwk["x"])).verify(b64(signature_b64), signing_input)
    else:
        raise AssertionError(f"unexpected alg {header['alg']}")
    return json.loads(b64(payload_b64))
