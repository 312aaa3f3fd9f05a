"""What an agency's system does to call the broker: sign a client assertion, get a token.

The ``casebroker token`` command uses it; it is also a worked example for integrators.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
from joserfc import jwt
from joserfc.jwk import import_key


class ClientKeyFileError(ValueError):
    """The client key file is unreadable or incomplete."""


@dataclass(frozen=True)
class ClientKey:
    """A client key file: ``{"client_id", "issuer", "key": <private JWK>}``."""

    client_id: str
    issuer: str
    jwk: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ClientKey:
        try:
            data = json.loads(path.read_text())
            return cls(data["client_id"], data["issuer"].rstrip("/"), data["key"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClientKeyFileError(f"{path}: not a client key file ({exc})") from None


def client_assertion(key: ClientKey, audience: str, lifetime: int = 60) -> str:
    """A private_key_jwt assertion (RFC 7523 section 3): iss = sub = client id, one-time jti."""
    now = int(time.time())
    claims = {
        "iss": key.client_id,
        "sub": key.client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(24),
    }
    private = import_key(key.jwk)
    header = {"alg": key.jwk.get("alg", "ES256"), "kid": key.jwk["kid"], "typ": "JWT"}
    return jwt.encode(header, claims, private)


def fetch_token(
    key: ClientKey,
    base_url: str | None = None,
    scope: str = "lookup",
    http: httpx.Client | None = None,
) -> dict[str, Any]:
    """Run the client_credentials grant against the broker's token endpoint."""
    base = (base_url or key.issuer).rstrip("/")
    form = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": client_assertion(key, key.issuer),
    }
    owner = http is None
    http = http or httpx.Client(timeout=10)
    try:
        response = http.post(base + "/token", data=form)
    finally:
        if owner:
            http.close()
    body = response.json()
    if response.status_code != 200:
        raise click.ClickException(
            f"token endpoint refused: {body.get('error')}: {body.get('error_description', '')}"
        )
    return body


@click.command("token")
@click.option(
    "--client-key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Client key file (client_id, issuer and private JWK).",
)
@click.option("--url", help="Broker base URL; default: the issuer in the key file.")
@click.option("--scope", default="lookup", show_default=True)
def token_command(key_file: Path, url: str | None, scope: str) -> None:
    """Get an access token with private_key_jwt and print the token response as JSON."""
    try:
        key = ClientKey.load(key_file)
        body = fetch_token(key, url, scope)
    except ClientKeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the broker: {exc}") from None
    click.echo(json.dumps(body, indent=2))
