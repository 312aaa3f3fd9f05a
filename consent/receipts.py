"""Consent receipts: the signed consent a citizen keeps. Pure: no I/O, no Flask.

A receipt is a compact JWS (RFC 7515) signed with the broker's key; ``kid`` names the key in
the broker's JWKS, so anyone holding the JWKS can verify it offline. The payload carries the
fields of the Kantara Initiative Consent Receipt v1.1 and of ISO/IEC TS 27560 that apply to a
consent given to a government agency, plus ``terms``: the consent's machine terms exactly as
the broker enforces them. ``typ`` is explicit (RFC 8725 section 3.11) so that a receipt can
never be mistaken for an access token, nor a token for a receipt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

RECEIPT_TYP = "consent-receipt+jwt"
RECEIPT_ALGS = ("ES256", "PS256", "EdDSA")
KANTARA_VERSION = "KI-CR-v1.1.0"
ISO_SCHEMA = "ISO/IEC TS 27560:2023"
MAX_RECEIPT_LENGTH = 16 * 1024
SERVICE_NAME = "Cross-agency data exchange"
REQUIRED_CLAIMS = ("iss", "iat", "jti", "version", "consentReceiptID", "piiPrincipalId", "terms")
REQUIRED_TERMS = ("grantee", "purpose", "categories", "valid_from", "valid_until")


class ReceiptInvalid(ValueError):
    """A receipt that does not verify; the message says why, fit to show the holder."""


@dataclass(frozen=True)
class Named:
    id: str
    name: str


@dataclass(frozen=True)
class CategoryTerm:
    id: str
    name: str
    sensitivity: str


@dataclass(frozen=True)
class ReceiptFacts:
    """Everything a receipt states, gathered by the caller from the consent and the registry."""

    consent_id: str
    issuer: str
    jurisdiction: str
    granted_at: datetime
    collection_method: str
    subject: str
    grantee: Named
    provider: Named | None
    purpose: Named
    purpose_description: str
    categories: tuple[CategoryTerm, ...]
    fields: Mapping[str, Sequence[str]] | None
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class VerifiedReceipt:
    kid: str
    alg: str
    claims: dict[str, Any]

    @property
    def consent_id(self) -> str:
        return str(self.claims["consentReceiptID"])

    @property
    def terms(self) -> dict[str, Any]:
        return dict(self.claims["terms"])


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def receipt_subject(secret: bytes, person_id: str, grantee: str) -> str:
    """The citizen as the receipt names them: pairwise per grantee, so that receipts given
    to different agencies cannot be joined, and never the internal person id."""
    digest = hmac.new(secret, f"{person_id}\0{grantee}".encode(), hashlib.sha256).digest()
    return "urn:casebroker:subject:" + base64.urlsafe_b64encode(digest[:18]).decode()


def receipt_claims(facts: ReceiptFacts) -> dict[str, Any]:
    """The payload: Kantara CR v1.1 names first, ISO/IEC TS 27560 record fields, then terms."""
    special = [c.name for c in facts.categories if c.sensitivity == "special"]
    sensitive = any(c.sensitivity in ("high", "special") for c in facts.categories)
    provider_name = facts.provider.name if facts.provider else "Any agency that holds the data"
    fields = {k: list(v) for k, v in sorted((facts.fields or {}).items())} or None
    issued = int(facts.granted_at.timestamp())
    return {
        "iss": facts.issuer,
        "iat": issued,
        "jti": facts.consent_id,
        "version": KANTARA_VERSION,
        "jurisdiction": facts.jurisdiction,
        "consentTimestamp": issued,
        "collectionMethod": facts.collection_method,
        "consentReceiptID": facts.consent_id,
        "language": "en",
        "piiPrincipalId": facts.subject,
        "piiControllers": [
            {
                "piiController": facts.grantee.name,
                "piiControllerId": facts.grantee.id,
                "onBehalf": False,
            }
        ],
        "services": [
            {
                "service": SERVICE_NAME,
                "purposes": [
                    {
                        "purpose": facts.purpose_description or facts.purpose.name,
                        "purposeCategory": [facts.purpose.name],
                        "consentType": "EXPLICIT",
                        "piiCategory": [c.name for c in facts.categories],
                        "primaryPurpose": True,
                        "termination": (
                            f"Ends {iso(facts.valid_until)}; the citizen may revoke it at any "
                            "time in the citizen portal."
                        ),
                        "thirdPartyDisclosure": True,
                        "thirdPartyName": provider_name,
                    }
                ],
            }
        ],
        "sensitive": sensitive,
        "spiCat": special,
        "schemaVersion": ISO_SCHEMA,
        "legalBasis": "consent",
        "notice": f"{facts.issuer}/consent/v1/purposes/{facts.purpose.id}",
        "terms": {
            "grantee": facts.grantee.id,
            "provider": facts.provider.id if facts.provider else None,
            "purpose": facts.purpose.id,
            "categories": [c.id for c in facts.categories],
            "fields": fields,
            "valid_from": iso(facts.valid_from),
            "valid_until": iso(facts.valid_until),
        },
    }


def sign_receipt(
    claims: Mapping[str, Any], kid: str, alg: str, key: ECKey | RSAKey | OKPKey
) -> str:
    """Compact JWS over the canonical JSON of ``claims``."""
    payload = json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    header = {"alg": alg, "kid": kid, "typ": RECEIPT_TYP}
    return jws.serialize_compact(header, payload.encode(), key, algorithms=[alg])


def _b64json(segment: str, what: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ReceiptInvalid(f"the {what} is not base64url-encoded JSON") from None


def verify_receipt(
    token: str, jwks: Mapping[str, Any], expected_issuer: str | None = None
) -> VerifiedReceipt:
    """Check a receipt against a JWKS; raise ``ReceiptInvalid`` saying what is wrong."""
    token = token.strip()
    if not token:
        raise ReceiptInvalid("the receipt is empty")
    if len(token) > MAX_RECEIPT_LENGTH:
        raise ReceiptInvalid(f"the receipt is longer than {MAX_RECEIPT_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ReceiptInvalid("the receipt is not a compact JWS (three non-empty parts)")
    header = _b64json(parts[0], "header")
    if not isinstance(header, dict):
        raise ReceiptInvalid("the header is not a JSON object")
    alg = header.get("alg")
    if alg not in RECEIPT_ALGS:
        raise ReceiptInvalid(
            f"the algorithm {alg!r} is not accepted (only {', '.join(RECEIPT_ALGS)})"
        )
    if header.get("typ") != RECEIPT_TYP:
        raise ReceiptInvalid(f"the token is not a consent receipt (typ must be {RECEIPT_TYP})")
    if set(header) - {"alg", "kid", "typ"}:
        raise ReceiptInvalid("the header has parameters a receipt never carries")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ReceiptInvalid("the header names no key (kid)")
    matching = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not matching:
        raise ReceiptInvalid(f"the key {kid} is not in the JWKS")
    try:
        key_set = KeySet.import_key_set({"keys": matching})
        verified = jws.deserialize_compact(token, key_set, algorithms=[alg])
    except JoseError:
        raise ReceiptInvalid("the signature does not verify: the receipt was altered") from None
    except ValueError:
        raise ReceiptInvalid("the key or the receipt is malformed") from None
    try:
        claims = json.loads(verified.payload)
    except (ValueError, UnicodeDecodeError):
        raise ReceiptInvalid("the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise ReceiptInvalid("the payload is not a JSON object")
    missing = [name for name in REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise ReceiptInvalid(f"the receipt lacks {', '.join(missing)}")
    terms = claims["terms"]
    if not isinstance(terms, dict) or any(name not in terms for name in REQUIRED_TERMS):
        raise ReceiptInvalid("the receipt's terms are incomplete")
    if expected_issuer is not None and claims["iss"] != expected_issuer:
        raise ReceiptInvalid(f"the receipt was issued by {claims['iss']}, not {expected_issuer}")
    return VerifiedReceipt(kid=kid, alg=alg, claims=claims)


def unverified_issuer(token: str) -> str | None:
    """The issuer a receipt claims, to find its JWKS; trusted only after verification."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = _b64json(parts[1], "payload")
    except ReceiptInvalid:
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None
