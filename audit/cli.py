"""``casebroker audit``: integrate the tree, verify the log, prune old bodies, show the head,
rotate the checkpoint key."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import IntegrityError

import audit
from audit import checkpoints, integrator, note, retention, tree, verify
from broker.db import get_db


@click.group("audit")
def audit_group() -> None:
    """The verifiable audit log: Merkle tree, checkpoints, verification, retention."""


@audit_group.command("integrate")
@click.option("--follow", is_flag=True, help="Keep integrating new events until stopped.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@with_appcontext
def integrate_command(follow: bool, interval: float) -> None:
    """Add appended events to the Merkle tree and sign a checkpoint per batch."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    while True:
        added, head = integrator.run(app)
        if added or not follow:
            click.echo(f"integrated {added} events; tree size {head.size}")
        if not follow:
            return
        time.sleep(max(0.05, interval))


@audit_group.command("rotate-key")
@with_appcontext
def rotate_key_command() -> None:
    """Retire the checkpoint signing key and make a new one; the next checkpoint is signed by
    it. Publish the new verifier key printed here to everyone who checks the log, and keep the
    old one: the checkpoints it signed stay valid. The rotation is an audit event."""
    config = current_app.config
    origin = checkpoints.log_origin(config)
    with get_db().sessionmaker() as session:
        try:
            old, new = checkpoints.rotate_key(session, config["KEY_ENCRYPTION_KEY_BYTES"], origin)
            audit.append(
                session,
                [
                    audit.make_record(
                        "audit.key_rotated",
                        None,
                        audit.event_time(),
                        channel="cli",
                        retired=old.key_id if old else None,
                        active=new.key_id,
                    )
                ],
            )
            session.commit()
        except IntegrityError:
            session.rollback()
            raise click.ClickException(
                "another rotation happened at the same time; run the command again"
            ) from None
        if old is not None:
            click.echo(f"retired:  {checkpoints.verifier(old).vkey()}")
        click.echo(f"active:   {checkpoints.verifier(new).vkey()}")


@audit_group.command("checkpoint")
@with_appcontext
def checkpoint_command() -> None:
    """Print the latest signed checkpoint (save it to check the log against later)."""
    with get_db().sessionmaker() as session:
        latest = checkpoints.latest_checkpoint(session)
    if latest is None:
        click.echo("no checkpoint yet: run `casebroker audit integrate`", err=True)
        sys.exit(1)
    click.echo(latest.note, nl=False)


@audit_group.command("verify")
@click.option(
    "--from-checkpoint",
    "held_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint kept earlier: the log must still contain the tree it signed.",
)
@click.option(
    "--key", "vkey", help="Verifier key to open that checkpoint with (default: the log's)."
)
@with_appcontext
def verify_command(held_path: Path | None, vkey: str | None) -> None:
    """Recompute the tree from every event and check hashes, nodes and checkpoints."""
    console = Console(stderr=True)
    config = current_app.config
    started_at = datetime.now(UTC)
    with get_db().sessionmaker() as session:
        held = []
        if held_path is not None:
            try:
                keys = (
                    [note.parse_verifier_key(vkey)]
                    if vkey
                    else list(checkpoints.verifiers(session).values())
                )
                held.append(verify.read_held_checkpoint(held_path.read_text(), keys))
            except (note.NoteError, UnicodeDecodeError) as exc:
                console.print(f"[red]the checkpoint file does not verify:[/red] {exc}")
                sys.exit(1)
        total = max(verify.event_count(session), tree.tree_head(session).size)
        kept_after = retention.cutoff(int(config["AUDIT_RETENTION_DAYS"]))
        columns = (
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console, transient=not console.is_terminal) as bar:
            task = bar.add_task("events", total=total)
            report = verify.verify_log(session, held, kept_after, lambda n: bar.advance(task, n))
        session.rollback()
        verify.record_run(session, report, started_at)
        session.commit()
    summary = (
        f"{report.events} events ({report.pruned} pruned), tree size {report.tree_size}, "
        f"{report.checkpoints} checkpoints checked"
    )
    if report.ok:
        click.echo(f"ok: {summary}")
        return
    click.echo(f"FAILED: {summary}", err=True)
    for failure in report.failures:
        click.echo(f"  {failure}", err=True)
    sys.exit(1)


@audit_group.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@with_appcontext
def prune_command(dry_run: bool) -> None:
    """Remove event bodies older than the retention period; leaf hashes and proofs stay."""
    days = int(current_app.config["AUDIT_RETENTION_DAYS"])
    with get_db().sessionmaker() as session:
        try:
            result = retention.prune(session, days, dry_run=dry_run)
        except retention.RetentionNotConfigured as exc:
            click.echo(f"nothing pruned: {exc}", err=True)
            sys.exit(1)
    verb = "would prune" if dry_run else "pruned"
    click.echo(f"{verb} {result.pruned} event bodies older than {result.cutoff.isoformat()}")
