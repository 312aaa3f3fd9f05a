"""Token endpoint grants for people: authorization_code and refresh_token, with DPoP.

They plug into the Authlib ``AuthorizationServer`` like ``client_credentials`` does, so client
authentication (private_key_jwt) and the RFC 6749 5.2 error rendering are Authlib's; the
decisions are ``identity.provider``'s. DPoP (RFC 9449) is checked here because Authlib lacks it.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error, grants
from flask import current_app, g, request

from broker.db import get_autocommit_connection, get_session
from identity import provider
from identity.dpop import DPoPError, current_nonce, verify_proof
from identity.events import record_event
from identity.models import Account, Client
from identity.oidc_models import TokenFamily

TOKEN_PATH = "/token"  # noqa: S105 (a path, not a secret)


class InvalidDPoPProof(OAuth2Error):
    """RFC 9449 section 5.10: ``invalid_dpop_proof`` or ``use_dpop_nonce`` (with a nonce)."""

    status_code = 400

    def __init__(self, exc: DPoPError) -> None:
        super().__init__(description=exc.description, error=exc.error)
        self.nonce: str | None = None
        if exc.error == "use_dpop_nonce":
            self.nonce = current_nonce(current_app.config["SECRET_KEY"])

    def get_headers(self) -> list[tuple[str, str]]:
        headers = list(super().get_headers())
        if self.nonce:
            headers.append(("DPoP-Nonce", self.nonce))
        return headers


class InvalidGrant(OAuth2Error):
    error = "invalid_grant"
    status_code = 400


def settings() -> provider.ProviderSettings:
    from identity.server import RESOURCE_PATH

    config = current_app.config
    return provider.ProviderSettings(
        issuer=config["ISSUER"],
        kek=config["KEY_ENCRYPTION_KEY_BYTES"],
        access_token_ttl=int(config["ACCESS_TOKEN_TTL"]),
        refresh_token_ttl=int(config["REFRESH_TOKEN_TTL"]),
        pairwise_salt=config["PAIRWISE_SALT"],
        resource=config["ISSUER"] + RESOURCE_PATH,
    )


def check_dpop(client_id: str, required: bool, path: str = TOKEN_PATH) -> str | None:
    """Verify the request's DPoP proof for ``path``; returns the key thumbprint or None."""
    header = request.headers.get("DPoP")
    if header is None and not required:
        return None
    config = current_app.config
    try:
        proof = verify_proof(
            header,
            method=request.method,
            url=config["ISSUER"] + path,
            burns=get_autocommit_connection(),
            nonce_secret=config["SECRET_KEY"] if config["DPOP_NONCE"] else None,
            skew=int(config["CLOCK_SKEW"]),
        )
    except DPoPError as exc:
        raise InvalidDPoPProof(exc) from None
    g.dpop_jkt = proof.jkt
    return proof.jkt


def _token_body(issued: provider.IssuedTokens) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": issued.token_type,
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }
    if issued.refresh_token:
        body["refresh_token"] = issued.refresh_token
    if issued.id_token:
        body["id_token"] = issued.id_token
    return body


class _PersonGrant(grants.BaseGrant, grants.TokenEndpointMixin):
    """What the grants that issue a person's tokens share: private_key_jwt, the grant type
    registered for the client, and a DPoP proof (required for FAPI clients)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def authenticate_client(self) -> tuple[Any, dict[str, Any], str | None]:
        """The client, the form, and the thumbprint of the DPoP key (None without a proof)."""
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise OAuth2Error(error="unauthorized_client", status_code=400)
        self.request.client = client
        jkt = check_dpop(client.client_id, client.is_fapi)
        return client, self.request.payload.data, jkt


class AuthorizationCodeGrant(_PersonGrant):
    """RFC 6749 4.1.3 with PKCE S256 (RFC 7636 4.6) and OIDC Core 3.1.3."""

    GRANT_TYPE = "authorization_code"

    def validate_token_request(self) -> None:
        client, form, jkt = self.authenticate_client()
        session = get_session()
        try:
            code = provider.redeem_code(session, client.client_id, form.get("code"))
        except provider.GrantError as exc:
            raise InvalidGrant(description=exc.description) from None
        if form.get("redirect_uri") != code.redirect_uri:
            session.commit()
            raise InvalidGrant(description="redirect_uri does not match the authorization.")
        if not provider.pkce_matches(form.get("code_verifier"), code.code_challenge):
            session.commit()
            raise InvalidGrant(description="The PKCE code_verifier does not match.")
        if code.dpop_jkt and code.dpop_jkt != jkt:
            session.commit()
            raise InvalidDPoPProof(DPoPError("The DPoP key is not the one the code is bound to."))
        self.code = code
        self.jkt = jkt

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        session = get_session()
        code = self.code
        client = session.get(Client, code.client_id)
        account = session.get(Account, code.account_id)
        if account is None or account.status != "active" or client is None:
            session.commit()
            raise InvalidGrant(description="The account is no longer active.")
        family = provider.start_family(session, code)
        issued = provider.issue_tokens(
            session,
            settings(),
            client,
            account,
            family_id=family.id,
            scope=code.scope,
            auth_time=code.auth_time,
            acr=code.acr,
            amr=list(code.amr),
            jkt=self.jkt,
            nonce=code.nonce,
            session_id=code.session_id,
            with_id_token="openid" in code.scope.split(),
        )
        session.commit()
        return 200, _token_body(issued), self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(_PersonGrant):
    """RFC 6749 6 with rotation: the old token is spent, reuse revokes the family."""

    GRANT_TYPE = "refresh_token"

    def validate_token_request(self) -> None:
        client, form, jkt = self.authenticate_client()
        session = get_session()
        try:
            row = provider.rotate_refresh_token(
                session, client.client_id, form.get("refresh_token")
            )
        except provider.GrantError as exc:
            if "already been used" in exc.description:
                record_event(
                    "token.refresh_reuse", client=client.client_id, outcome="family-revoked"
                )
            raise InvalidGrant(description=exc.description) from None
        if row.dpop_jkt and row.dpop_jkt != jkt:
            session.commit()
            raise InvalidDPoPProof(DPoPError("The DPoP key is not the one the token is bound to."))
        requested = (form.get("scope") or "").split()
        if requested and not set(requested) <= set(row.scope.split()):
            session.commit()
            raise OAuth2Error(error="invalid_scope", status_code=400)
        self.row = row
        self.scope = " ".join(requested) if requested else row.scope
        self.jkt = jkt

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        session = get_session()
        family = session.get(TokenFamily, self.row.family_id)
        assert family is not None
        client = session.get(Client, family.client_id)
        account = session.get(Account, family.account_id)
        if account is None or account.status != "active" or client is None:
            session.commit()
            raise InvalidGrant(description="The account is no longer active.")
        issued = provider.issue_tokens(
            session,
            settings(),
            client,
            account,
            family_id=family.id,
            scope=self.scope,
            auth_time=self.row.auth_time,
            acr=self.row.acr,
            amr=list(self.row.amr),
            jkt=self.jkt,
            nonce=None,
            session_id=None,
            with_id_token=False,
        )
        session.commit()
        return 200, _token_body(issued), self.TOKEN_RESPONSE_HEADER
