"""Operator commands for the client registry: ``casebroker clients add|list|disable``."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

import audit
from broker.db import get_db
from broker.models import Agency
from identity.clients import ClientRegistryError, list_clients, load_jwks_file, register_client
from identity.keys import rotate
from identity.models import Account, Client, SigningKey
from identity.oidc_models import UpstreamLink


@click.group("clients")
def clients_group() -> None:
    """Agency OAuth clients and their public keys."""


@clients_group.command("add")
@click.argument("client_id")
@click.option("--agency", "agency_id", required=True, help="Agency id, e.g. tax.")
@click.option("--name", required=True, help="Human-readable name of the client system.")
@click.option(
    "--jwks",
    "jwks_file",
    required=True,
    type=click.Path(path_type=Path),
    help="File holding the client's public JWK or JWKS (private members are dropped).",
)
@click.option("--scope", default="lookup", show_default=True)
@click.option(
    "--fapi/--no-fapi",
    default=True,
    show_default=True,
    help="FAPI 2.0 client: pushed authorization requests and DPoP-bound tokens required.",
)
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Exact redirect URI.")
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option(
    "--grant-type",
    "grant_types",
    multiple=True,
    type=click.Choice(["client_credentials", "authorization_code", "refresh_token"]),
    help="Default: client_credentials, or the code flow when redirect URIs are given.",
)
@click.option("--subject-type", type=click.Choice(["public", "pairwise"]), default="public")
@click.option("--sector", help="Sector identifier for pairwise subjects (default: redirect host).")
@click.option("--id-token-alg", type=click.Choice(["ES256", "PS256", "EdDSA"]), default="ES256")
@with_appcontext
def add(
    client_id: str,
    agency_id: str,
    name: str,
    jwks_file: Path,
    scope: str,
    fapi: bool,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    grant_types: tuple[str, ...],
    subject_type: str,
    sector: str | None,
    id_token_alg: str,
) -> None:
    """Register CLIENT_ID for an agency with its public keys."""
    if not grant_types:
        grant_types = (
            ("authorization_code", "refresh_token") if redirect_uris else ("client_credentials",)
        )
    try:
        jwks = load_jwks_file(jwks_file)
        with get_db().session() as session:
            if session.get(Agency, agency_id) is None:
                raise ClientRegistryError(f"unknown agency {agency_id!r}")
            register_client(
                session,
                client_id,
                agency_id,
                name,
                jwks,
                scope=scope,
                is_fapi=fapi,
                redirect_uris=redirect_uris,
                post_logout_redirect_uris=logout_uris,
                grant_types=grant_types,
                subject_type=subject_type,
                sector_identifier=sector,
                id_token_alg=id_token_alg,
            )
    except ClientRegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"client {client_id} added for agency {agency_id} with {len(jwks)} key(s)")


@clients_group.command("list")
@with_appcontext
def list_() -> None:
    """List clients, their agency, status and key ids."""
    table = Table("client", "agency", "status", "fapi", "scope", "grants", "keys")
    with get_db().session() as session:
        for client in list_clients(session):
            kids = ", ".join(k.kid for k in client.keys if k.status == "active")
            table.add_row(
                client.id,
                client.agency_id,
                client.status,
                "yes" if client.is_fapi else "no",
                client.scope,
                " ".join(client.grant_types),
                kids,
            )
    Console().print(table)


@clients_group.command("disable")
@click.argument("client_id")
@with_appcontext
def disable(client_id: str) -> None:
    """Stop CLIENT_ID from getting tokens; tokens already issued expire on their own."""
    with get_db().session() as session:
        client = session.get(Client, client_id)
        if client is None:
            raise click.ClickException(f"unknown client {client_id!r}")
        client.status = "disabled"
    click.echo(f"client {client_id} disabled")


@click.group("keys")
def keys_group() -> None:
    """The broker's own signing keys."""


@keys_group.command("rotate")
@click.option("--alg", type=click.Choice(["ES256", "PS256", "EdDSA"]), default="ES256")
@with_appcontext
def rotate_command(alg: str) -> None:
    """Rotate the signing key, publish-before-sign: run once to publish the next key, and
    again after two minutes to sign with it; the old key stays published until its tokens
    have expired."""
    config = current_app.config
    lifetime = int(config["ACCESS_TOKEN_TTL"]) + int(config["CLOCK_SKEW"])
    with get_db().session() as session:
        step = rotate(session, config["KEY_ENCRYPTION_KEY_BYTES"], alg, lifetime)
        if step.action != "waiting":
            record = audit.make_record(
                "key.rotated" if step.action == "activated" else "key.published",
                None,
                audit.event_time(),
                kid=step.kid,
                previous_kid=step.previous_kid,
                alg=alg,
                retired=list(step.retired) or None,
            )
            audit.append(session, [record])
    if step.action == "published":
        click.echo(
            f"published {alg} key {step.kid}; run `casebroker keys rotate` again in "
            f"{step.wait_seconds} s to start signing with it"
        )
    elif step.action == "waiting":
        click.echo(f"key {step.kid} is published; it can sign in {step.wait_seconds} s")
    else:
        click.echo(
            f"{alg} key {step.kid} now signs; {step.previous_kid or 'no previous key'} stays "
            f"published for {lifetime} s"
        )


@keys_group.command("list")
@with_appcontext
def list_keys() -> None:
    """List signing keys and their states."""
    table = Table("kid", "alg", "status", "created", "retire after")
    with get_db().session() as session:
        for row in session.scalars(select(SigningKey).order_by(SigningKey.created_at)):
            table.add_row(
                row.kid, row.alg, row.status, str(row.created_at), str(row.retire_after or "")
            )
    Console().print(table)


@click.group("accounts")
def accounts_group() -> None:
    """People's accounts: links to upstream identity providers."""


@accounts_group.command("link-upstream")
@click.argument("username")
@click.option("--provider", required=True, help="Upstream provider name (its `name`).")
@click.option("--subject", required=True, help="The person's `sub` at that provider.")
@with_appcontext
def link_upstream(username: str, provider: str, subject: str) -> None:
    """Let USERNAME sign in with PROVIDER as SUBJECT (identity brokering)."""
    if provider not in current_app.extensions["casebroker.upstream"]:
        raise click.ClickException(f"unknown upstream provider {provider!r}")
    with get_db().session() as session:
        account = session.scalar(select(Account).where(Account.username == username))
        if account is None:
            raise click.ClickException(f"unknown account {username!r}")
        if session.get(UpstreamLink, (provider, subject)) is not None:
            raise click.ClickException("that upstream subject is already linked")
        session.add(UpstreamLink(provider=provider, subject=subject, account_id=account.id))
        record = audit.make_record(
            "account.upstream_linked",
            None,
            audit.event_time(),
            account=str(account.id),
            provider=provider,
        )
        audit.append(session, [record])
    click.echo(f"{username} may now sign in with {provider}")
