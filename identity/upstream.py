"""Identity brokering: people may sign in here with an upstream OpenID provider.

The broker is then a FAPI 2.0 client of the upstream: PAR, PKCE S256, private_key_jwt, a DPoP
key per sign-in, ``iss`` checked on the response (RFC 9207), the ID token verified (signature by
the upstream's published key, ``iss``, ``aud``, ``nonce``, ``exp``). The upstream subject is
mapped to an account here only through an operator-made link (``upstream_link``): an unlinked
subject is refused, never provisioned. Flow state (state, nonce, verifier, DPoP key) lives in
the server-side browser session, so any node can take the callback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, import_key
from sqlalchemy.orm import Session

from broker.config import ConfigError
from identity.accounts import ACR_MFA, ACR_PASSWORD
from identity.models import SUPPORTED_SIGNING_ALGS, Account
from identity.oidc_models import UpstreamLink

HTTP_TIMEOUT = 10.0
DISCOVERY_TTL = 300.0


class UpstreamError(Exception):
    """The upstream sign-in failed; the message is safe to show and to log."""


@dataclass(frozen=True)
class UpstreamProvider:
    name: str
    title: str
    issuer: str
    client_id: str
    key: dict[str, Any]


def load_providers(path: str | None) -> dict[str, UpstreamProvider]:
    """Read and check the providers file at start-up; a bad file stops the app."""
    if not path:
        return {}
    try:
        entries = json.loads(Path(path).read_text())
        providers = {}
        for entry in entries:
            key = json.loads(Path(entry["key_file"]).read_text())
            key = key.get("key", key)
            if import_key(key).is_private is not True:
                raise ValueError(f"{entry['key_file']} holds no private key")
            provider = UpstreamProvider(
                name=str(entry["name"]),
                title=str(entry.get("title") or entry["name"]),
                issuer=str(entry["issuer"]).rstrip("/"),
                client_id=str(entry["client_id"]),
                key=key,
            )
            if not provider.name.isidentifier():
                raise ValueError(f"provider name {provider.name!r} must be a simple word")
            providers[provider.name] = provider
    except (OSError, ValueError, KeyError, TypeError, JoseError) as exc:
        raise ConfigError(f"CASEBROKER_UPSTREAM_PROVIDERS: {exc}") from None
    return providers


_discovery: dict[str, tuple[float, dict[str, Any], KeySet]] = {}


def discover(provider: UpstreamProvider) -> tuple[dict[str, Any], KeySet]:
    """The upstream's metadata and keys, cached a few minutes per process (they are the
    upstream's published documents, not state the broker's processes must agree on)."""
    cached = _discovery.get(provider.issuer)
    if cached and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1], cached[2]
    try:
        meta = httpx.get(
            provider.issuer + "/.well-known/openid-configuration", timeout=HTTP_TIMEOUT
        ).json()
        if meta.get("issuer") != provider.issuer:
            raise UpstreamError("The upstream metadata names another issuer.")
        keys = KeySet.import_key_set(httpx.get(meta["jwks_uri"], timeout=HTTP_TIMEOUT).json())
    except (httpx.HTTPError, ValueError, KeyError, JoseError) as exc:
        raise UpstreamError(f"The upstream provider cannot be reached: {exc}") from None
    _discovery[provider.issuer] = (time.monotonic(), meta, keys)
    return meta, keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _assertion(provider: UpstreamProvider) -> str:
    key = import_key(provider.key)
    now = int(time.time())
    claims = {
        "iss": provider.client_id,
        "sub": provider.client_id,
        "aud": provider.issuer,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode({"alg": provider.key.get("alg", "ES256"), "kid": key.kid}, claims, key)


def _proof(dpop_key: dict[str, Any], method: str, url: str) -> str:
    key = ECKey.import_key(dpop_key)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
    return jwt.encode(header, claims, key)


def start(provider: UpstreamProvider, redirect_uri: str) -> tuple[str, dict[str, Any]]:
    """Push the request upstream; returns the URL to send the browser to and the flow state
    to keep in the session."""
    meta, _keys = discover(provider)
    verifier = secrets.token_urlsafe(48)
    state = {
        "provider": provider.name,
        "state": secrets.token_urlsafe(24),
        "nonce": secrets.token_urlsafe(24),
        "verifier": verifier,
        "dpop_key": ECKey.generate_key("P-256").as_dict(private=True),
        "redirect_uri": redirect_uri,
        "started": int(time.time()),
    }
    form = {
        "response_type": "code",
        "client_id": provider.client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid",
        "state": state["state"],
        "nonce": state["nonce"],
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _assertion(provider),
    }
    par = meta["pushed_authorization_request_endpoint"]
    try:
        response = httpx.post(
            par,
            data=form,
            headers={"DPoP": _proof(state["dpop_key"], "POST", par)},
            timeout=HTTP_TIMEOUT,
        )
        request_uri = response.json()["request_uri"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise UpstreamError(f"The upstream provider refused the sign-in request: {exc}") from None
    query = urlencode({"client_id": provider.client_id, "request_uri": request_uri})
    return meta["authorization_endpoint"] + "?" + query, state


@dataclass(frozen=True)
class UpstreamLogin:
    subject: str
    acr: str
    amr: list[str]


def finish(provider: UpstreamProvider, flow: dict[str, Any], args: dict[str, str]) -> UpstreamLogin:
    """Check the authorization response, redeem the code, verify the ID token."""
    meta, keys = discover(provider)
    if args.get("iss") != provider.issuer:
        raise UpstreamError("The response does not come from the expected provider (iss).")
    if not secrets.compare_digest(args.get("state", ""), flow["state"]):
        raise UpstreamError("The response does not belong to this sign-in (state).")
    if "error" in args:
        raise UpstreamError(f"The upstream provider answered: {args['error']}.")
    token_url = meta["token_endpoint"]
    try:
        response = httpx.post(
            token_url,
            data={
                "grant_type": "authorization_code",
                "code": args.get("code", ""),
                "redirect_uri": flow["redirect_uri"],
                "code_verifier": flow["verifier"],
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": _assertion(provider),
            },
            headers={"DPoP": _proof(flow["dpop_key"], "POST", token_url)},
            timeout=HTTP_TIMEOUT,
        )
        id_token = response.json()["id_token"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        raise UpstreamError(f"The upstream provider refused the code: {exc}") from None
    try:
        claims = jwt.decode(id_token, keys, algorithms=list(SUPPORTED_SIGNING_ALGS)).claims
        jwt.JWTClaimsRegistry(
            leeway=30,
            iss={"essential": True, "value": provider.issuer},
            aud={"essential": True, "value": provider.client_id},
            nonce={"essential": True, "value": flow["nonce"]},
            sub={"essential": True},
            exp={"essential": True},
        ).validate(claims)
    except (JoseError, ValueError) as exc:
        raise UpstreamError(f"The upstream ID token is not valid: {exc}") from None
    acr = ACR_MFA if claims.get("acr") == ACR_MFA else ACR_PASSWORD
    return UpstreamLogin(str(claims["sub"]), acr, ["fed"])


def linked_account(session: Session, provider: str, subject: str) -> Account | None:
    link = session.get(UpstreamLink, (provider, subject))
    return session.get(Account, link.account_id) if link else None
