"""The OpenID Connect provider's decisions: authorization requests, codes, tokens, subjects.

No Flask here: callers pass the database session and a ``ProviderSettings``; the HTTP layer
(``authorize.py``, ``grants.py``, ``endpoints.py``) only translates. Specs: OIDC Core 1.0,
RFC 6749, RFC 7636 (S256 only), RFC 9126 (PAR), RFC 9207 (``iss``), RFC 9068 (JWT access
tokens), RFC 9449 (``cnf.jkt``), FAPI 2.0 Security Profile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from joserfc import jwt
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.models import Agency
from identity.accounts import ACR_MFA, ACR_VALUES, Holder, holder_of
from identity.keys import active_key
from identity.models import Account, Client
from identity.oidc_models import (
    AuthorizationCode,
    ConsentGrant,
    PushedRequest,
    RefreshToken,
    TokenFamily,
)

PAR_TTL = 90
CODE_TTL = 60
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PROMPTS = {"none", "login", "consent"}
#: Scopes that name claims (OIDC Core 5.4); other registered scopes name APIs.
IDENTITY_SCOPES = {"openid", "profile"}
#: Standard OIDC scopes this provider has no claims for: ignored (OIDC Core 3.1.2.1).
IGNORED_SCOPES = {"email", "address", "phone", "offline_access"}
#: Scopes only an officer may hold: they act on the exchange for an agency.
OFFICER_SCOPES = {"lookup", "audit"}
#: Resource servers by the scope that reaches them; every token is also for the exchange (and
#: userinfo), RFC 9068 2.2 allows several audiences.
SCOPE_RESOURCES = {"audit": "/audit/v1"}
MAX_PARAM_LENGTH = 2000
AUTHORIZATION_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "max_age",
    "login_hint",
    "acr_values",
    "ui_locales",
    "dpop_jkt",
    "response_mode",
)


class AuthorizationError(Exception):
    """An error of the authorization endpoint (RFC 6749 4.1.2.1, OIDC Core 3.1.2.6).

    ``redirect`` is False when the redirect URI cannot be trusted: the error is shown to the
    user instead of being sent to the client.
    """

    def __init__(self, error: str, description: str, redirect: bool = True) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect = redirect


@dataclass
class ProviderSettings:
    issuer: str
    kek: bytes
    access_token_ttl: int
    refresh_token_ttl: int
    pairwise_salt: str
    resource: str


@dataclass
class AuthorizationRequest:
    """A validated authorization request, as kept between the login and consent pages."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    nonce: str | None
    code_challenge: str
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    login_hint: str | None = None
    acr_values: list[str] = field(default_factory=list)
    ui_locales: str | None = None
    dpop_jkt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuthorizationRequest:
        return cls(**data)


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def redirect_uri_allowed(uri: str) -> bool:
    """https anywhere; http only on loopback (RFC 8252 7.3); no fragment (RFC 6749 3.1.2)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    if parts.fragment or not parts.hostname or len(uri) > MAX_PARAM_LENGTH:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def client_row(session: Session, client_id: Any) -> Client | None:
    if not isinstance(client_id, str) or len(client_id) > 128 or not client_id.isprintable():
        return None
    row = session.get(Client, client_id)
    if row is None or row.status != "active":
        return None
    agency = session.get(Agency, row.agency_id)
    if agency is None or agency.status != "active":
        return None
    return row


def validate_authorization_params(
    client: Client, params: dict[str, Any], pushed: bool
) -> AuthorizationRequest:
    """Check an authorization request (pushed or plain) against the client's registration."""
    for name, value in params.items():
        if not isinstance(value, str) or len(value) > MAX_PARAM_LENGTH or "\x00" in value:
            raise AuthorizationError(
                "invalid_request", f"Parameter {name} is malformed.", redirect=False
            )
    if params.get("client_id") not in (None, client.id):
        raise AuthorizationError("invalid_request", "client_id does not match.", redirect=False)
    redirect_uri = params.get("redirect_uri")
    if not redirect_uri or redirect_uri not in (client.redirect_uris or []):
        raise AuthorizationError(
            "invalid_request",
            "redirect_uri is missing or not registered for this client.",
            redirect=False,
        )
    if not pushed and params.get("request_uri"):
        raise AuthorizationError("invalid_request", "request_uri is not allowed here.")
    if "request" in params:
        raise AuthorizationError(
            "request_not_supported", "Request objects are not supported; use PAR."
        )
    if params.get("response_type") != "code":
        raise AuthorizationError(
            "unsupported_response_type", "Only the code response type is supported."
        )
    if params.get("response_mode") not in (None, "query"):
        raise AuthorizationError("invalid_request", "Only the query response mode is supported.")
    scopes = [s for s in (params.get("scope") or "").split() if s not in IGNORED_SCOPES]
    if "openid" not in scopes:
        raise AuthorizationError("invalid_scope", "The openid scope is required.")
    allowed = set(client.scope.split()) | IDENTITY_SCOPES
    if not set(scopes) <= allowed:
        raise AuthorizationError("invalid_scope", "A requested scope is not allowed.")
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if not challenge:
        raise AuthorizationError("invalid_request", "code_challenge is required (PKCE).")
    if method != "S256":
        raise AuthorizationError("invalid_request", "code_challenge_method must be S256.")
    if not 43 <= len(challenge) <= 128:
        raise AuthorizationError("invalid_request", "code_challenge is malformed.")
    prompt = (params.get("prompt") or "").split()
    if not set(prompt) <= PROMPTS or ("none" in prompt and len(prompt) > 1):
        raise AuthorizationError("invalid_request", "prompt is not valid.")
    max_age = None
    if params.get("max_age") is not None:
        raw = params["max_age"]
        if not raw.isdigit() or len(raw) > 9:
            raise AuthorizationError("invalid_request", "max_age must be a whole number.")
        max_age = int(raw)
    acr_values = (params.get("acr_values") or "").split()
    dpop_jkt = params.get("dpop_jkt")
    if dpop_jkt is not None and not 40 <= len(dpop_jkt) <= 64:
        raise AuthorizationError("invalid_request", "dpop_jkt is malformed.")
    return AuthorizationRequest(
        client_id=client.id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=params.get("state"),
        nonce=params.get("nonce"),
        code_challenge=challenge,
        prompt=prompt,
        max_age=max_age,
        login_hint=params.get("login_hint"),
        acr_values=[a for a in acr_values if a in ACR_VALUES],
        ui_locales=params.get("ui_locales"),
        dpop_jkt=dpop_jkt,
    )


def push_request(session: Session, client: Client, request: AuthorizationRequest) -> str:
    """Store a pushed request; the returned ``request_uri`` is usable once (RFC 9126 2.2)."""
    handle = secrets.token_urlsafe(32)
    session.add(
        PushedRequest(
            id=sha256_hex(handle),
            client_id=client.id,
            params=request.to_dict(),
            expires_at=datetime.now(UTC) + timedelta(seconds=PAR_TTL),
        )
    )
    return REQUEST_URI_PREFIX + handle


def load_request_uri(
    session: Session, client: Client, request_uri: str
) -> tuple[str, AuthorizationRequest]:
    """A pushed request by its ``request_uri``: known, this client's, unexpired, unused.

    It is marked used only when the authorization answers the client (``consume_request``):
    reloading the page before then must work (FAPI 2.0 conformance tests this)."""
    if not request_uri.startswith(REQUEST_URI_PREFIX):
        raise AuthorizationError(
            "request_uri_not_supported", "Only request_uri values from PAR are supported."
        )
    if len(request_uri) > 200:
        raise AuthorizationError("invalid_request_uri", "request_uri is not valid.", False)
    key = sha256_hex(request_uri[len(REQUEST_URI_PREFIX) :])
    row = session.get(PushedRequest, key)
    if row is None or row.client_id != client.id:
        raise AuthorizationError("invalid_request_uri", "request_uri is not known.", False)
    request = AuthorizationRequest.from_dict(row.params)
    if row.used_at is not None:
        raise _with_redirect(
            AuthorizationError("invalid_request_uri", "request_uri has been used."), request
        )
    if _aware(row.expires_at) <= datetime.now(UTC):
        raise _with_redirect(
            AuthorizationError("invalid_request_uri", "request_uri has expired."), request
        )
    return key, request


def consume_request(session: Session, key: str) -> bool:
    """Use a pushed request once (RFC 9126 4): the conditional UPDATE lets one process win."""
    result = session.execute(
        update(PushedRequest)
        .where(PushedRequest.id == key, PushedRequest.used_at.is_(None))
        .values(used_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


class RedirectableError(AuthorizationError):
    def __init__(self, base: AuthorizationError, request: AuthorizationRequest) -> None:
        super().__init__(base.error, base.description, True)
        self.request = request


def _with_redirect(error: AuthorizationError, request: AuthorizationRequest) -> RedirectableError:
    return RedirectableError(error, request)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Login:
    """What the browser session says about who logged in, when and how."""

    account_id: uuid.UUID
    auth_time: int
    acr: str
    amr: list[str]
    session_id: str | None


def needs_login(request: AuthorizationRequest, login: Login | None, fresh: bool) -> bool:
    """OIDC Core 3.1.2.3: prompt=login, max_age exceeded, or a stronger acr than we have."""
    if login is None:
        return True
    if "login" in request.prompt and not fresh:
        return True
    if request.max_age is not None and time.time() - login.auth_time > request.max_age:
        return True
    return ACR_MFA in request.acr_values and login.acr != ACR_MFA and not fresh


def effective_scopes(request: AuthorizationRequest, account: Account) -> list[str]:
    """Officer-only scopes are dropped for citizens (OIDC Core 3.1.2.1 lets us narrow)."""
    if account.kind == "officer":
        return list(request.scopes)
    return [s for s in request.scopes if s not in OFFICER_SCOPES]


def account_may_use(session: Session, client: Client, account: Account) -> bool:
    """An officer acting on the exchange acts for their own agency only."""
    if account.status != "active":
        return False
    holder = holder_of(session, account)
    if holder.kind == "officer":
        if holder.agency is None:
            return False
        if OFFICER_SCOPES & set(client.scope.split()):
            return holder.agency == client.agency_id
    return True


def consent_covers(session: Session, account_id: uuid.UUID, client_id: str, scopes: list[str]):
    grant = session.scalar(
        select(ConsentGrant).where(
            ConsentGrant.account_id == account_id, ConsentGrant.client_id == client_id
        )
    )
    return grant is not None and set(scopes) <= set(grant.scopes)


def remember_consent(
    session: Session, account_id: uuid.UUID, client_id: str, scopes: list[str]
) -> None:
    grant = session.scalar(
        select(ConsentGrant).where(
            ConsentGrant.account_id == account_id, ConsentGrant.client_id == client_id
        )
    )
    if grant is None:
        session.add(ConsentGrant(account_id=account_id, client_id=client_id, scopes=sorted(scopes)))
    else:
        grant.scopes = sorted(set(grant.scopes) | set(scopes))
        grant.granted_at = datetime.now(UTC)


def issue_code(
    session: Session, request: AuthorizationRequest, login: Login, scopes: list[str]
) -> str:
    code = secrets.token_urlsafe(32)
    session.add(
        AuthorizationCode(
            code_hash=sha256_hex(code),
            client_id=request.client_id,
            account_id=login.account_id,
            family_id=uuid.uuid4(),
            redirect_uri=request.redirect_uri,
            scope=" ".join(scopes),
            nonce=request.nonce,
            code_challenge=request.code_challenge,
            dpop_jkt=request.dpop_jkt,
            auth_time=login.auth_time,
            acr=login.acr,
            amr=list(login.amr),
            session_id=login.session_id,
            expires_at=datetime.now(UTC) + timedelta(seconds=CODE_TTL),
        )
    )
    return code


class GrantError(Exception):
    """A token endpoint error (RFC 6749 5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def pkce_matches(verifier: Any, challenge: str) -> bool:
    """RFC 7636 4.6 with S256, the only method accepted."""
    if not isinstance(verifier, str) or not 43 <= len(verifier) <= 128:
        return False
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


def redeem_code(session: Session, client_id: str, code: Any) -> AuthorizationCode:
    """Take a code once. A second use revokes every token issued from it (RFC 6749 4.1.2)."""
    if not isinstance(code, str) or not code or len(code) > 200:
        raise GrantError("invalid_grant", "The code is not valid.")
    row = session.get(AuthorizationCode, sha256_hex(code))
    if row is None:
        raise GrantError("invalid_grant", "The code is not valid.")
    if row.client_id != client_id:
        raise GrantError("invalid_grant", "The code was issued to another client.")
    _spend(session, AuthorizationCode.code_hash, row, row.family_id, "code", "code-reuse")
    return row


def _spend(
    session: Session,
    key: Any,
    row: AuthorizationCode | RefreshToken,
    family_id: uuid.UUID,
    what: str,
    reuse_reason: str,
) -> None:
    """Mark a single-use credential used, once across every process (a conditional UPDATE).

    The loser of a race, or a replay, revokes the credential's whole token family: whoever
    holds a stolen copy loses what was issued from it too (RFC 9700 4.14.2).
    """
    now = datetime.now(UTC)
    model = type(row)
    result = session.execute(
        update(model)
        .where(key == getattr(row, key.key), model.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        revoke_family(session, family_id, reuse_reason)
        session.commit()
        raise GrantError("invalid_grant", f"The {what} has already been used.")
    if _aware(row.expires_at) <= now:
        session.commit()
        raise GrantError("invalid_grant", f"The {what} has expired.")


def revoke_family(session: Session, family_id: uuid.UUID, reason: str) -> None:
    family = session.get(TokenFamily, family_id)
    if family is None:
        # The code was reused before its first redemption finished: leave a revoked marker
        # so the first redemption's tokens are born revoked.
        code = session.scalar(
            select(AuthorizationCode).where(AuthorizationCode.family_id == family_id)
        )
        if code is None:
            return
        session.add(
            TokenFamily(
                id=family_id,
                client_id=code.client_id,
                account_id=code.account_id,
                revoked_at=datetime.now(UTC),
                revoked_reason=reason,
            )
        )
        return
    if family.revoked_at is None:
        family.revoked_at = datetime.now(UTC)
        family.revoked_reason = reason


def family_revoked(session: Session, family_id: uuid.UUID) -> bool:
    family = session.get(TokenFamily, family_id)
    return family is not None and family.revoked_at is not None


def pairwise_subject(salt: str, sector: str, local_id: str) -> str:
    """OIDC Core 8.1: a subject per sector that different sectors cannot correlate."""
    mac = hmac.new(salt.encode(), f"{sector}\0{local_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sector_of(client: Client) -> str:
    if client.sector_identifier:
        return client.sector_identifier
    hosts = {urlsplit(u).hostname for u in client.redirect_uris or []}
    return sorted(h for h in hosts if h)[0] if hosts else client.id


def subject_for(settings: ProviderSettings, client: Client, account: Account) -> str:
    """Public subjects are the account id (never the person id); pairwise per sector."""
    local = str(account.id)
    if client.subject_type == "pairwise":
        return pairwise_subject(settings.pairwise_salt, sector_of(client), local)
    return local


def account_for_subject(
    session: Session, settings: ProviderSettings, client: Client, sub: str
) -> Account | None:
    """Reverse of ``subject_for`` for a client's own subjects (id_token_hint, introspection)."""
    if client.subject_type == "public":
        try:
            return session.get(Account, uuid.UUID(sub))
        except ValueError:
            return None
    return None


def user_claims(holder: Holder, scopes: list[str], sub: str, client_agency: str) -> dict[str, Any]:
    """Claims about the user for the ID token and userinfo (OIDC Core 5.1, 5.4)."""
    claims: dict[str, Any] = {"sub": sub}
    if "profile" in scopes:
        claims["name"] = holder.name
        if holder.given_name:
            claims["given_name"] = holder.given_name
        if holder.family_name:
            claims["family_name"] = holder.family_name
    if holder.kind == "officer":
        claims.update(officer_claims(holder))
    return claims


def officer_claims(holder: Holder) -> dict[str, Any]:
    """What the exchange and the auditor API rely on: ``officer``, ``agency``, ``roles``."""
    return {
        "officer": str(holder.officer_id),
        "agency": holder.agency,
        "roles": list(holder.roles),
    }


@dataclass
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None
    id_token: str | None
    scope: str
    token_type: str


def _sign(session: Session, settings: ProviderSettings, alg: str, header: dict, claims: dict):
    key = active_key(session, settings.kek, alg)
    header = {**header, "alg": key.alg, "kid": key.kid}
    return jwt.encode(header, claims, key.key, algorithms=[key.alg])


def issue_tokens(
    session: Session,
    settings: ProviderSettings,
    client: Client,
    account: Account,
    *,
    family_id: uuid.UUID,
    scope: str,
    auth_time: int,
    acr: str,
    amr: list[str],
    jkt: str | None,
    nonce: str | None,
    session_id: str | None,
    with_id_token: bool,
) -> IssuedTokens:
    """Access token (RFC 9068, bound to ``jkt``), rotated refresh token, ID token."""
    now = int(time.time())
    holder = holder_of(session, account)
    scopes = scope.split()
    sub = subject_for(settings, client, account)
    access_claims: dict[str, Any] = {
        "iss": settings.issuer,
        "sub": sub,
        "aud": _audiences(settings, scopes),
        "client_id": client.id,
        "scope": scope,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + settings.access_token_ttl,
        "auth_time": auth_time,
        "acr": acr,
        "amr": amr,
        "gid": str(family_id),
        "agency": client.agency_id,
    }
    if holder.kind == "officer":
        access_claims.update(officer_claims(holder))
    if jkt:
        access_claims["cnf"] = {"jkt": jkt}
    access_token = _sign(session, settings, "ES256", {"typ": "at+jwt"}, access_claims)
    refresh = secrets.token_urlsafe(32)
    session.add(
        RefreshToken(
            token_hash=sha256_hex(refresh),
            family_id=family_id,
            scope=scope,
            dpop_jkt=jkt,
            auth_time=auth_time,
            acr=acr,
            amr=amr,
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl),
        )
    )
    id_token = None
    if with_id_token:
        id_claims = user_claims(holder, scopes, sub, client.agency_id)
        id_claims.update(
            {
                "iss": settings.issuer,
                "aud": client.id,
                "azp": client.id,
                "iat": now,
                "exp": now + settings.access_token_ttl,
                "auth_time": auth_time,
                "acr": acr,
                "amr": amr,
            }
        )
        if nonce:
            id_claims["nonce"] = nonce
        if session_id:
            id_claims["sid"] = session_id
        id_token = _sign(
            session, settings, client.id_token_signed_response_alg, {"typ": "JWT"}, id_claims
        )
    return IssuedTokens(
        access_token=access_token,
        expires_in=settings.access_token_ttl,
        refresh_token=refresh,
        id_token=id_token,
        scope=scope,
        token_type="DPoP" if jkt else "Bearer",
    )


def _audiences(settings: ProviderSettings, scopes: list[str]) -> str | list[str]:
    extra = [settings.issuer + SCOPE_RESOURCES[s] for s in sorted(SCOPE_RESOURCES) if s in scopes]
    return [settings.resource, *extra] if extra else settings.resource


def start_family(session: Session, code: AuthorizationCode) -> TokenFamily:
    family = session.get(TokenFamily, code.family_id)
    if family is None:
        family = TokenFamily(
            id=code.family_id, client_id=code.client_id, account_id=code.account_id
        )
        session.add(family)
        session.flush()
    return family


def rotate_refresh_token(session: Session, client_id: str, token: Any) -> RefreshToken:
    """Use a refresh token once; reusing a rotated one revokes the whole family."""
    if not isinstance(token, str) or not token or len(token) > 200:
        raise GrantError("invalid_grant", "The refresh token is not valid.")
    row = session.get(RefreshToken, sha256_hex(token))
    if row is None:
        raise GrantError("invalid_grant", "The refresh token is not valid.")
    family = session.get(TokenFamily, row.family_id)
    if family is None or family.client_id != client_id:
        raise GrantError("invalid_grant", "The refresh token was issued to another client.")
    if family.revoked_at is not None:
        raise GrantError("invalid_grant", "The refresh token has been revoked.")
    _spend(session, RefreshToken.token_hash, row, family.id, "refresh token", "refresh-token-reuse")
    return row
