"""The ``casebroker`` command: Flask's CLI plus the broker's own command groups."""

from __future__ import annotations

import sys

import click
from flask.cli import FlaskGroup, with_appcontext

from audit.cli import audit_group
from broker.agency_client import lookup_command, token_command
from broker.app import create_app
from broker.cases.cli import cases_group
from broker.config import ConfigError
from broker.db import get_db
from broker.demo import demo_command
from broker.migrate import current_revision, head_revision, upgrade
from broker.registry.cli import registry_group
from consent.cli import consent_group, notifications_group
from policies.cli import policy_group


@click.group("db")
def db_group() -> None:
    """Database schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION."""
    engine = get_db().engine
    upgrade(engine, revision)
    click.echo(f"database at revision {current_revision(engine)}")


@db_group.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's revision and whether it is the code's head."""
    current = current_revision(get_db().engine)
    head = head_revision()
    state = "current" if current == head else f"behind head {head}"
    click.echo(f"{current or '(empty database)'} ({state})")
    url = get_db().engine.url.render_as_string(hide_password=True)
    click.echo(f"database: {url}", err=True)
    if current != head:
        sys.exit(1)


def _create_app() -> object:
    return create_app()


cli = FlaskGroup(
    name="casebroker",
    create_app=_create_app,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
    help="casebroker: cross-agency case-data sharing and identity broker.",
)
cli.add_command(db_group)
cli.add_command(audit_group)
cli.add_command(demo_command)
cli.add_command(policy_group)
cli.add_command(consent_group)
cli.add_command(notifications_group)
cli.add_command(cases_group)
cli.add_command(registry_group)
cli.add_command(token_command)
cli.add_command(lookup_command)


def main() -> None:
    """Entry point; an invalid configuration ends with a one-line explanation, no traceback."""
    try:
        cli.main(prog_name="casebroker")
    except ConfigError as exc:
        click.echo(f"casebroker: configuration error: {exc}", err=True)
        sys.exit(2)


__all__ = ["cli", "main"]
