"""The registry of agency clients and their public keys (operators manage it from the CLI)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from identity.models import SUPPORTED_SIGNING_ALGS, Client, ClientKey
from identity.provider import redirect_uri_allowed

GRANT_TYPES = {"client_credentials", "authorization_code", "refresh_token"}
#: Key types a client may authenticate with; symmetric ("oct") keys never.
ALLOWED_KTY = {"EC", "RSA", "OKP"}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


class ClientRegistryError(ValueError):
    """A client or key that cannot be registered; the message says why."""


def parse_public_jwks(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Accept a JWK or a JWKS; keep only public members; refuse symmetric and weak keys."""
    keys = document.get("keys") if "keys" in document else [document]
    if not isinstance(keys, list) or not keys:
        raise ClientRegistryError("no keys found: give a JWK or a JWKS with at least one key")
    public: list[dict[str, Any]] = []
    for raw in keys:
        if not isinstance(raw, dict) or raw.get("kty") not in ALLOWED_KTY:
            raise ClientRegistryError("keys must be EC (P-256), RSA (2048 bits or more) or OKP")
        alg = raw.get("alg")
        if alg is not None and alg not in SUPPORTED_SIGNING_ALGS:
            raise ClientRegistryError(f"key alg {alg!r} is not allowed; use ES256, PS256 or EdDSA")
        stripped = {k: v for k, v in raw.items() if k not in PRIVATE_MEMBERS}
        try:
            key = KeySet.import_key_set({"keys": [stripped]}).keys[0]
        except (JoseError, ValueError, TypeError) as exc:
            raise ClientRegistryError(f"invalid key: {exc}") from None
        if raw["kty"] == "EC" and raw.get("crv") != "P-256":
            raise ClientRegistryError("EC keys must be on P-256 (ES256)")
        if raw["kty"] == "RSA" and key.raw_value.key_size < 2048:
            raise ClientRegistryError("RSA keys must have at least 2048 bits")
        if raw["kty"] == "OKP" and raw.get("crv") != "Ed25519":
            raise ClientRegistryError("OKP keys must be Ed25519")
        stripped.setdefault("kid", key.thumbprint())
        public.append(stripped)
    return public


def load_jwks_file(path: Path) -> list[dict[str, Any]]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClientRegistryError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ClientRegistryError(f"{path} holds no JWK or JWKS object")
    return parse_public_jwks(document)


def register_client(
    session: Session,
    client_id: str,
    agency_id: str,
    name: str,
    jwks: list[dict[str, Any]],
    scope: str = "lookup",
    is_fapi: bool = False,
    redirect_uris: Sequence[str] = (),
    post_logout_redirect_uris: Sequence[str] = (),
    grant_types: Sequence[str] = ("client_credentials",),
    subject_type: str = "public",
    sector_identifier: str | None = None,
    id_token_alg: str = "ES256",  # noqa: S107 (an algorithm name)
) -> Client:
    """Add a client with its public keys; the caller commits.

    ``is_fapi`` clients (FAPI 2.0) must push authorization requests (PAR) and bind tokens with
    DPoP; operators get that by default (``casebroker clients add --fapi``). Redirect URIs are
    matched exactly; http only on loopback (RFC 8252 7.3).
    """
    if session.get(Client, client_id) is not None:
        raise ClientRegistryError(f"client {client_id!r} already exists")
    for uri in [*redirect_uris, *post_logout_redirect_uris]:
        if not redirect_uri_allowed(uri):
            raise ClientRegistryError(
                f"redirect URI {uri!r} must be https (http only on loopback), without fragment"
            )
    unknown = set(grant_types) - GRANT_TYPES
    if unknown or not grant_types:
        raise ClientRegistryError(f"grant types must be among {sorted(GRANT_TYPES)}")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ClientRegistryError("the authorization_code grant needs at least one redirect URI")
    if subject_type not in ("public", "pairwise"):
        raise ClientRegistryError("subject type must be public or pairwise")
    if id_token_alg not in SUPPORTED_SIGNING_ALGS:
        raise ClientRegistryError("ID token algorithm must be ES256, PS256 or EdDSA")
    client = Client(
        id=client_id,
        agency_id=agency_id,
        name=name,
        scope=scope,
        is_fapi=is_fapi,
        grant_types=list(grant_types),
        redirect_uris=list(redirect_uris),
        post_logout_redirect_uris=list(post_logout_redirect_uris),
        subject_type=subject_type,
        sector_identifier=sector_identifier,
        id_token_signed_response_alg=id_token_alg,
    )
    for jwk in jwks:
        thumbprint = KeySet.import_key_set({"keys": [jwk]}).keys[0].thumbprint()
        client.keys.append(ClientKey(kid=jwk["kid"], thumbprint=thumbprint, jwk=jwk))
    session.add(client)
    return client


def get_client(session: Session, client_id: str) -> Client | None:
    return session.get(Client, client_id)


def list_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.agency_id, Client.id)))
