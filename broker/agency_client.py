"""What an agency's system does to call the broker: sign a client assertion, get a token.

The ``casebroker token`` command uses it; it is also a worked example for integrators.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, import_key


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


@dataclass
class DPoPProver:
    """A client's DPoP key (RFC 9449) and the proofs it signs, one per HTTP request.

    The key is the client's own, kept apart from its client-authentication key, so that a
    token it binds is useless to anyone who has the token but not this key. ``nonce`` holds
    the last server nonce (``DPoP-Nonce``), sent back in the next proof.
    """

    key: ECKey = field(default_factory=lambda: ECKey.generate_key("P-256", auto_kid=False))
    nonce: str | None = None

    @property
    def thumbprint(self) -> str:
        return self.key.thumbprint()

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        public = self.key.as_dict(private=False)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public}
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(24),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if self.nonce:
            claims["nonce"] = self.nonce
        return jwt.encode(header, claims, self.key)

    def remember_nonce(self, response: httpx.Response) -> bool:
        """Keep a nonce the server sent; True when it is new (the request may be retried)."""
        nonce = response.headers.get("DPoP-Nonce")
        if nonce and nonce != self.nonce:
            self.nonce = nonce
            return True
        return False


def authorization_headers(
    access_token: str, method: str, url: str, dpop: DPoPProver | None
) -> dict[str, str]:
    """``Authorization`` (and ``DPoP``) for a resource request with a bearer or DPoP token."""
    if dpop is None:
        return {"Authorization": f"Bearer {access_token}"}
    return {
        "Authorization": f"DPoP {access_token}",
        "DPoP": dpop.proof(method, url, access_token),
    }


class BrokerError(click.ClickException):
    """The broker refused a request; the message carries its problem details."""


def fetch_token(
    key: ClientKey,
    base_url: str | None = None,
    scope: str = "lookup",
    http: httpx.Client | None = None,
    dpop: DPoPProver | None = None,
) -> dict[str, Any]:
    """Run the client_credentials grant against the broker's token endpoint.

    With ``dpop`` the token is bound to the prover's key (RFC 9449); a server nonce asked for
    with ``use_dpop_nonce`` is taken and the request sent once more.
    """
    base = (base_url or key.issuer).rstrip("/")
    url = base + "/token"
    owner = http is None
    http = http or httpx.Client(timeout=10)
    try:
        for _attempt in range(2):
            form = {
                "grant_type": "client_credentials",
                "scope": scope,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": client_assertion(key, key.issuer),
            }
            headers = {"DPoP": dpop.proof("POST", url)} if dpop else {}
            response = http.post(url, data=form, headers=headers)
            if not (dpop and dpop.remember_nonce(response) and response.status_code == 400):
                break
    finally:
        if owner:
            http.close()
    try:
        body = response.json()
    except ValueError:
        raise BrokerError(
            f"the token endpoint answered {response.status_code} without JSON"
        ) from None
    if response.status_code != 200:
        raise BrokerError(
            f"token endpoint refused: {body.get('error')}: {body.get('error_description', '')}"
        )
    return body


def post_lookup(
    base_url: str,
    access_token: str,
    lookup: dict[str, Any],
    http: httpx.Client | None = None,
    dpop: DPoPProver | None = None,
) -> dict[str, Any]:
    """POST a lookup to the exchange API; raise BrokerError with the problem details."""
    url = base_url.rstrip("/") + "/exchange/v1/lookups"
    owner = http is None
    http = http or httpx.Client(timeout=30)
    try:
        for _attempt in range(2):
            headers = authorization_headers(access_token, "POST", url, dpop)
            response = http.post(url, json=lookup, headers=headers)
            if not (dpop and dpop.remember_nonce(response) and response.status_code == 401):
                break
    finally:
        if owner:
            http.close()
    try:
        body = response.json()
    except ValueError:
        raise BrokerError(f"the broker answered {response.status_code} without JSON") from None
    if response.status_code != 200:
        raise BrokerError(
            f"{body.get('status')} {body.get('title')}: {body.get('detail', '')} "
            f"(correlation id {body.get('correlation_id')})"
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
        body = fetch_token(key, url, scope, dpop=DPoPProver())
    except ClientKeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the broker: {exc}") from None
    click.echo(json.dumps(body, indent=2))


def _print_results(body: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("provider", "category", "status", "detail", title=f"purpose {body['purpose']}")
    for result in body["results"]:
        if result["status"] == "ok":
            detail = "\n".join(
                ", ".join(f"{k}={v}" for k, v in record.items()) for record in result["records"]
            )
        else:
            detail = result.get("reason", "")
        table.add_row(result["provider"], result["category"], result["status"], detail)
    console = Console()
    console.print(table)
    console.print(f"correlation id {body['correlation_id']}")


@click.command("lookup")
@click.option(
    "--client-key",
    "key_file",
    required=True,
    type=click.Path(path_type=Path),
    help="Client key file (client_id, issuer and private JWK).",
)
@click.option(
    "--person",
    required=True,
    metavar="SCHEME:VALUE",
    help="Your agency's own identifier for the person, e.g. client-no:SS-000001.",
)
@click.option(
    "--category",
    "categories",
    required=True,
    multiple=True,
    help="Data category; repeat for several.",
)
@click.option("--purpose", required=True)
@click.option("--justification", help="Why, where the purpose requires it.")
@click.option("--break-glass", is_flag=True, help="Ask for break-glass access.")
@click.option("--url", help="Broker base URL; default: the issuer in the key file.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def lookup_command(
    key_file: Path,
    person: str,
    categories: tuple[str, ...],
    purpose: str,
    justification: str | None,
    break_glass: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Get a token with private_key_jwt and look a person up across the other agencies."""
    scheme, sep, value = person.partition(":")
    if not sep or not scheme or not value:
        raise click.BadParameter("use SCHEME:VALUE", param_hint="--person")
    lookup: dict[str, Any] = {
        "person": {"scheme": scheme, "value": value},
        "categories": list(categories),
        "purpose": purpose,
        "break_glass": break_glass,
    }
    if justification:
        lookup["justification"] = justification
    try:
        key = ClientKey.load(key_file)
        base = url or key.issuer
        dpop = DPoPProver()
        token = fetch_token(key, base, dpop=dpop)["access_token"]
        body = post_lookup(base, token, lookup, dpop=dpop)
    except ClientKeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach the broker: {exc}") from None
    if as_json:
        click.echo(json.dumps(body, indent=2))
    else:
        _print_results(body)
