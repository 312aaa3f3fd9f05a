"""``casebroker registry``: agencies, categories, purposes and sources from a file."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import IntegrityError

from broker.db import get_db
from broker.registry.document import RegistryFileError, read_file
from broker.registry.service import apply, export


@click.group("registry")
def registry_group() -> None:
    """The exchange's registry: who takes part, what they hold, and for which purposes."""


@registry_group.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and show the changes; write nothing.")
@with_appcontext
def apply_command(file: Path, dry_run: bool) -> None:
    """Bring the registry to FILE (TOML, or JSON for a .json name): new entries are created,
    changed ones updated, entries the file does not name left alone. All or nothing; every
    change is an audit event."""
    console = Console()
    with get_db().sessionmaker() as session:
        try:
            changes = apply(session, read_file(file))
        except RegistryFileError as exc:
            session.rollback()
            raise click.ClickException(
                f"{file} was not applied:\n  " + "\n  ".join(exc.problems)
            ) from None
        except IntegrityError as exc:
            session.rollback()
            raise click.ClickException(
                f"{file} was not applied: it clashes with the registry ({exc.orig})"
            ) from None
        if dry_run:
            session.rollback()
        else:
            session.commit()
    if not changes:
        console.print("The registry already matches the file: nothing to change.")
        return
    table = Table("kind", "id", "change", "attributes", title="Registry changes")
    for change in changes:
        table.add_row(change.kind, change.id, change.action, ", ".join(change.attributes))
    console.print(table)
    verb = "would be made (dry run: nothing written)" if dry_run else "made"
    console.print(f"{len(changes)} changes {verb}.")


@registry_group.command("export")
@with_appcontext
def export_command() -> None:
    """Print the registry as JSON, in the shape ``registry apply`` takes."""
    with get_db().sessionmaker() as session:
        click.echo(json.dumps(export(session), indent=2, ensure_ascii=False))
