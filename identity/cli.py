"""Operator commands for the client registry: ``casebroker clients add|list|disable``."""

from __future__ import annotations

from pathlib import Path

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table

from broker.db import get_db
from broker.models import Agency
from identity.clients import ClientRegistryError, list_clients, load_jwks_file, register_client
from identity.models import Client


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
@with_appcontext
def add(client_id: str, agency_id: str, name: str, jwks_file: Path, scope: str) -> None:
    """Register CLIENT_ID for an agency with its public keys."""
    try:
        jwks = load_jwks_file(jwks_file)
        with get_db().session() as session:
            if session.get(Agency, agency_id) is None:
                raise ClientRegistryError(f"unknown agency {agency_id!r}")
            register_client(session, client_id, agency_id, name, jwks, scope=scope)
    except ClientRegistryError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"client {client_id} added for agency {agency_id} with {len(jwks)} key(s)")


@clients_group.command("list")
@with_appcontext
def list_() -> None:
    """List clients, their agency, status and key ids."""
    table = Table("client", "agency", "status", "scope", "keys")
    with get_db().session() as session:
        for client in list_clients(session):
            kids = ", ".join(k.kid for k in client.keys if k.status == "active")
            table.add_row(client.id, client.agency_id, client.status, client.scope, kids)
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
