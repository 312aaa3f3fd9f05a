"""Commands: ``casebroker consent sweep|caps|revoke|verify-receipt`` and
``casebroker notifications deliver``."""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx
from flask import current_app
from flask.cli import ScriptInfo, with_appcontext

from broker.db import get_db
from consent import notifications
from consent.errors import ConsentError
from consent.receipts import ReceiptInvalid, verify_receipt
from consent.service import (
    Actor,
    ConsentService,
    ConsentSettings,
    purpose_categories,
    set_purpose_categories,
)
from identity.keys import published_jwks

MAX_JWKS_BYTES = 256 * 1024


@click.group("consent")
def consent_group() -> None:
    """Consent records: expiry sweep, purpose caps, receipts."""


@consent_group.command("sweep")
@with_appcontext
def sweep_command() -> None:
    """Record consents whose window has ended and requests that lapsed as expired, and queue
    expiry notices. Decisions already treat them as expired; this writes it down."""
    with get_db().sessionmaker() as session:
        report = ConsentService(session, ConsentSettings.from_config(current_app.config)).sweep()
    click.echo(
        f"expired {report.expired} consents and {report.lapsed_requests} requests; "
        f"queued {report.expiring_notices} expiry notices"
    )


@consent_group.command("caps")
@click.argument("purpose")
@click.option("--categories", help="Comma-separated categories a consent may cover; '' for none.")
@with_appcontext
def caps_command(purpose: str, categories: str | None) -> None:
    """Show or set which categories a consent under PURPOSE may cover."""
    with get_db().sessionmaker() as session:
        if categories is not None:
            wanted = [c.strip() for c in categories.split(",") if c.strip()]
            try:
                set_purpose_categories(session, purpose, wanted)
            except ConsentError as exc:
                raise click.ClickException(exc.detail) from None
            session.commit()
        allowed = purpose_categories(session, purpose)
    click.echo(f"{purpose}: {', '.join(allowed) if allowed else '(takes no consent)'}")


@consent_group.command("revoke")
@click.argument("consent_id", type=click.UUID)
@click.option("--operator", required=True, help="Who revokes, for the history and audit log.")
@with_appcontext
def revoke_command(consent_id: uuid.UUID, operator: str) -> None:
    """Revoke a consent as an operator (for instance on a court order or a citizen's letter)."""
    with get_db().sessionmaker() as session:
        service = ConsentService(session, ConsentSettings.from_config(current_app.config))
        try:
            service.revoke(consent_id, Actor.operator(operator))
        except ConsentError as exc:
            raise click.ClickException(exc.detail) from None
    click.echo(f"revoked {consent_id}")


def _load_jwks(source: str) -> dict[str, Any]:
    if source.startswith(("https://", "http://")):
        try:
            response = httpx.get(source, timeout=10, follow_redirects=False)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot fetch the JWKS: {exc}") from None
        raw = response.content
    else:
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise click.ClickException(f"cannot read the JWKS: {exc.strerror}") from None
    if len(raw) > MAX_JWKS_BYTES:
        raise click.ClickException("the JWKS is too large")
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise click.ClickException("the JWKS is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise click.ClickException("the JWKS has no keys list")
    return document


@consent_group.command("verify-receipt")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--jwks",
    "jwks_source",
    help="JWKS file or URL to verify against; default: this broker's published keys.",
)
@click.pass_context
def verify_receipt_command(ctx: click.Context, file: Path, jwks_source: str | None) -> None:
    """Check that FILE is a consent receipt signed by the broker, offline with --jwks FILE."""
    try:
        token = file.read_text(encoding="utf-8", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    expected_issuer = None
    if jwks_source:
        jwks = _load_jwks(jwks_source)
    else:
        app = ctx.ensure_object(ScriptInfo).load_app()
        with app.app_context():
            with get_db().sessionmaker() as session:
                jwks = published_jwks(session)
            expected_issuer = app.config["ISSUER"]
    try:
        verified = verify_receipt(token, jwks, expected_issuer)
    except ReceiptInvalid as exc:
        click.echo(f"invalid receipt: {exc}", err=True)
        ctx.exit(1)
    terms = verified.terms
    click.echo(f"valid receipt {verified.consent_id}")
    click.echo(f"  issuer      {verified.claims['iss']} (key {verified.kid}, {verified.alg})")
    click.echo(f"  grantee     {terms['grantee']}")
    click.echo(f"  provider    {terms.get('provider') or 'any'}")
    click.echo(f"  purpose     {terms['purpose']}")
    click.echo(f"  categories  {', '.join(terms['categories'])}")
    click.echo(f"  valid       {terms['valid_from']} to {terms['valid_until']}")


@click.group("notifications")
def notifications_group() -> None:
    """The citizens' notification outbox."""


@notifications_group.command("deliver")
@click.option("--follow", is_flag=True, help="Keep running, checking every --interval seconds.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1, 3600))
@click.option("--batch", default=50, show_default=True, type=click.IntRange(1, 1000))
@with_appcontext
def deliver_command(follow: bool, interval: float, batch: int) -> None:
    """Collect new notifications and deliver what is due: by e-mail when SMTP is configured
    and the citizen gave an address, else to the portal. Several may run at once."""
    config = current_app.config
    settings = notifications.SmtpSettings.from_config(config)
    sender = notifications.SmtpSender(settings) if settings else None
    worker = notifications.worker_id()
    stopping = []

    def stop(_signum: int, _frame: Any) -> None:
        stopping.append(True)

    if follow:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    total = notifications.DeliveryReport()
    while True:
        with get_db().sessionmaker() as session:
            notifications.collect_break_glass(session)
            notifications.collect_expiring(
                session, datetime.now(UTC), ConsentSettings.from_config(config).expiry_notice
            )
            session.commit()
            while not stopping:
                report = notifications.deliver_due(
                    session,
                    sender,
                    sender_address=settings.sender if settings else "",
                    portal_url=config["ISSUER"],
                    worker=worker,
                    batch=batch,
                )
                for name in ("sent", "portal", "retried", "failed"):
                    setattr(total, name, getattr(total, name) + getattr(report, name))
                if report.handled < batch:
                    break
        if not follow or stopping:
            break
        time.sleep(interval)
    click.echo(
        f"sent {total.sent}, to the portal {total.portal}, to retry {total.retried}, "
        f"failed {total.failed}"
    )
