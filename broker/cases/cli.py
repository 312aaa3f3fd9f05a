"""``casebroker cases``: bulk registration from a file, and closing cases past their end."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from flask.cli import with_appcontext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from broker.cases.importer import ImportFileError, import_cases, open_text, write_rejections
from broker.cases.service import close_ended
from broker.db import get_db
from broker.models import Agency

#: Rejected rows printed on the terminal; all of them go to ``--rejects``.
SHOWN_REJECTIONS = 20


@click.group("cases")
def cases_group() -> None:
    """Open cases: an agency may look up only persons it has a case on."""


@cases_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--agency", required=True, help="The agency registering the cases.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write every refused row (line, reference, reason) to this CSV file.",
)
@with_appcontext
def import_command(file: Path, agency: str, rejects: Path | None) -> None:
    """Register the cases of a CSV FILE: valid rows are kept, refused rows reported.

    Columns: reference, person (SCHEME:VALUE, the agency's own identifier), capacity,
    purposes (';'-separated), starts_on (YYYY-MM-DD), and optionally ends_on, officers
    (officer ids, ';'-separated) and teams (';'-separated). Exits 1 when a row was refused.
    """
    console = Console(stderr=True)
    try:
        handle = open_text(file)
    except ImportFileError as exc:
        raise click.ClickException(str(exc)) from None
    total = max(0, sum(1 for line in handle if line.strip()) - 1)
    handle.seek(0)
    with get_db().sessionmaker() as session:
        if session.get(Agency, agency) is None:
            raise click.ClickException(f"unknown agency {agency!r}")
        started = time.monotonic()
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        with progress:
            task = progress.add_task("rows", total=total)
            try:
                report = import_cases(
                    session, agency, handle, on_progress=lambda n: progress.advance(task, n)
                )
            except ImportFileError as exc:
                raise click.ClickException(f"{file}: {exc}; nothing was imported") from None
        elapsed = time.monotonic() - started
    rate = report.rows / elapsed if elapsed > 0 else 0.0
    click.echo(
        f"{report.rows} rows: {report.registered} cases registered, "
        f"{len(report.rejected)} refused ({elapsed:.1f} s, {rate:,.0f} rows/s)"
    )
    if report.rejected:
        table = Table("line", "reference", "reason", title="Refused rows")
        for rejection in report.rejected[:SHOWN_REJECTIONS]:
            table.add_row(str(rejection.line), rejection.reference, rejection.reason)
        console.print(table)
        if len(report.rejected) > SHOWN_REJECTIONS:
            more = len(report.rejected) - SHOWN_REJECTIONS
            hint = f" (all in {rejects})" if rejects else "; --rejects FILE lists them all"
            console.print(f"... and {more} more{hint}")
    if rejects:
        with rejects.open("w", newline="", encoding="utf-8") as out:
            write_rejections(report, out)
    if report.rejected:
        sys.exit(1)


@cases_group.command("close-ended")
@with_appcontext
def close_ended_command() -> None:
    """Mark cases past their end date as closed, each with its audit event.

    Lookups do not wait for this: a case past its end date already does not count.
    """
    with get_db().sessionmaker() as session:
        closed = close_ended(session)
    click.echo(f"{closed} cases closed")
