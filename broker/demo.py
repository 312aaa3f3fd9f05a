"""``casebroker demo``: a seeded broker on 127.0.0.1, and what to try with it.

The demo uses known passwords and synthetic persons, so it refuses a production instance.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from flask import Flask
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from werkzeug.serving import run_simple

from audit import integrator
from broker.app import create_app
from broker.db import get_db
from broker.demo_data import (
    DEMO_LOGINS,
    MAX_PERSONS,
    SEED_STEPS,
    DemoSeedError,
    SeedResult,
    seed_demo,
)
from broker.exchange.service import Caller, LookupRequest, LookupService
from broker.migrate import upgrade
from broker.portal import ensure_portal_client
from consent import ConsentSettings, seed_demo_consents
from identity.models import Account

HOST = "127.0.0.1"


def _overrides(port: int) -> dict[str, Any]:
    """Without an explicit issuer, the issuer is where the demo listens, so tokens name it."""
    if os.environ.get("CASEBROKER_ISSUER"):
        return {}
    return {"ISSUER": f"http://{HOST}:{port}"}


def _seed(app: Flask, seed: int, persons: int) -> tuple[SeedResult, float]:
    """Migrate, then seed in one transaction, showing progress on stderr; times the seeding."""
    columns = (
        TextColumn("{task.description:<36}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with app.app_context():
        upgrade(get_db().engine)
        started = time.perf_counter()
        with Progress(*columns, console=Console(stderr=True)) as progress:
            task = progress.add_task("migrated", total=len(SEED_STEPS))

            def on_step(done: int, label: str) -> None:
                progress.update(task, completed=done, description=label)

            with get_db().session() as session:
                result = seed_demo(
                    session,
                    Path(app.config["INSTANCE_PATH"]),
                    app.config["ISSUER"],
                    seed=seed,
                    persons=persons,
                    on_step=on_step,
                )
            # Through the consent service, which commits as it goes: each consent gets its
            # history, audit events, signed receipt and notifications like a real one.
            with get_db().sessionmaker() as session:
                seed_demo_consents(session, ConsentSettings.from_config(app.config))
            # The portal logs citizens in through the provider like any relying party; its
            # redirect URI follows the demo's port, so it is brought up to date on every start.
            with get_db().sessionmaker() as session:
                ensure_portal_client(
                    session, app.config["ISSUER"], app.config["KEY_ENCRYPTION_KEY_BYTES"]
                )
                session.commit()
            if result.persons_created:
                _seed_traffic(app, result)
            # The seeding's audit events go into the Merkle tree now, so the demo starts
            # with a signed checkpoint to show and verify.
            integrator.run(app)
            progress.update(task, completed=len(SEED_STEPS), description="seeded")
    return result, time.perf_counter() - started


DEMO_JUSTIFICATION = "Child admitted to A&E, allergies unknown"


def demo_traffic(result: SeedResult, officer: str | None) -> list[tuple[Caller, LookupRequest]]:
    """The lookups a fresh demo has already seen, so the citizen's "who looked at my data" and
    the auditor's console (with a break-glass access to review) have something to show."""
    citizen = next(
        (x for x in result.citizen_identifiers if x.agency_id == "social-services"), None
    )
    if citizen is None:
        return []
    system = Caller("social-services-cms", "social-services")
    traffic = [
        (
            system,
            LookupRequest(
                citizen.scheme,
                citizen.value,
                ("income", "vehicle", "health.summary"),
                "benefit-eligibility",
            ),
        ),
        (
            system,
            LookupRequest(
                citizen.scheme,
                citizen.value,
                ("health.summary",),
                "child-protection",
                justification=DEMO_JUSTIFICATION,
                break_glass=True,
            ),
        ),
    ]
    if officer is not None:
        desk = Caller("social-services-desk", "social-services", officer, ("caseworker",))
        request = LookupRequest(citizen.scheme, citizen.value, ("income",), "benefit-eligibility")
        traffic.append((desk, request))
    if result.without_case is not None:
        unknown = result.without_case
        request = LookupRequest(unknown.scheme, unknown.value, ("income",), "benefit-eligibility")
        traffic.append((system, request))
    return traffic


def _seed_traffic(app: Flask, result: SeedResult) -> None:
    """Run the demo's first lookups through the real service: decided, audited, fetched."""
    with get_db().sessionmaker() as session:
        officer = session.scalar(
            select(Account.officer_id).where(Account.username == DEMO_LOGINS[0].username)
        )
        for caller, request in demo_traffic(result, str(officer) if officer else None):
            service = LookupService(
                session,
                app.extensions["casebroker.policy"],
                app.extensions["casebroker.sources"],
                secrets.token_hex(16),
            )
            service.run(caller, request)


def _seed_summary(result: SeedResult, elapsed: float) -> str:
    if result.persons_created:
        return f"Seeded {result.person_count} synthetic persons in {elapsed:.1f} s."
    summary = f"The database already holds the demo seed ({result.person_count} persons); kept."
    if not result.seed_matches:
        summary += " It was made with another --seed or --persons, which were ignored."
    return summary


def _columns(rows: Iterable[tuple[str, object]]) -> list[str]:
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    return [f"  {name:<{width}}  {value}" for name, value in rows]


def lookup_example(result: SeedResult) -> list[str]:
    """Lookups that show each outcome: data from two sources with a denial, a denial for lack
    of an open case, and a break-glass access."""
    key = result.key_files.get("social-services")
    client_no = next(
        (x.value for x in result.citizen_identifiers if x.agency_id == "social-services"), None
    )
    if key is None or client_no is None:
        return []
    command = f"  casebroker lookup --client-key {key} \\"
    lines = [
        f"Look {result.citizen_name} up as social-services, which has an open case on them:",
        "tax answers with income, the vehicle registry with vehicles (the citizen consented),",
        "health denies (no agreement covers it):",
        command,
        f"    --person client-no:{client_no} --purpose benefit-eligibility \\",
        "    --category income --category vehicle --category health.summary",
    ]
    if result.without_case is not None:
        person = f"client-no:{result.without_case.value}"
        lines += [
            "",
            "Social services has no case on this person, so every source denies:",
            command,
            f"    --person {person} --purpose benefit-eligibility --category income",
            "",
            "Break-glass for a child at risk: permitted without a case, flagged for review:",
            command,
            f"    --person {person} --purpose child-protection --category health.summary \\",
            f"    --break-glass --justification '{DEMO_JUSTIFICATION}'",
        ]
    return lines


def what_to_try(
    base_url: str, issuer: str, result: SeedResult, elapsed: float, serving: bool
) -> str:
    """The text a visitor reads first: where to point a browser, a client and a login."""
    lines = [
        _seed_summary(result, elapsed),
        "",
        f"casebroker demo {'serving at ' + base_url if serving else 'seeded (not serving)'}",
        "  synthetic persons and demo passwords only: never use this instance for real data",
    ]
    if issuer != base_url:
        lines.append(f"  issuer: {issuer}")
    lines += ["", "Discovery, keys and readiness:"]
    lines += [f"  {base_url}{path}" for path in ("/.well-known/openid-configuration", "/jwks.json")]
    lines += [f"  {base_url}/readyz", "", "Client private keys (ES256, mode 0600):"]
    lines += _columns((f"{agency}-cms", path) for agency, path in result.key_files.items())
    token_key = result.key_files.get("social-services")
    if token_key is not None:
        lines += [
            "",
            "Get an access token as the social-services case-management system:",
            f"  casebroker token --client-key {token_key}",
        ]
    example = lookup_example(result)
    if example:
        lines += ["", *example]
    lines += [
        "",
        "Web pages (log in with the logins below):",
        f"  {base_url}/portal/          the citizen portal: consents, who looked at my data",
        f"  {base_url}/audit/console/   the auditor's console: search, review queue, integrity",
        f"  {base_url}/account          an account's own page: MFA, remembered grants",
        f"  {base_url}/docs             the exchange API, browsable (OpenAPI)",
    ]
    lines += ["", "Logins (DEMO-ONLY passwords):"]
    for login in result.logins:
        who = f"{login.display_name}, {login.role} at {login.agency_id}"
        if login.kind == "citizen":
            who = f"{result.citizen_name}, citizen"
        lines.append(f"  {login.username:<8} password {login.password:<18} {who}")
    lines += ["", f"The citizen ({result.citizen_name}) at each agency:"]
    lines += [
        f"  person {link.value} at {link.agency_id} ({link.scheme})"
        for link in result.citizen_identifiers
    ]
    if result.without_benefits is not None:
        lines += [
            "",
            "A person with no benefits record (a benefits lookup yields not_found):",
            f"  person {result.without_benefits.value} at {result.without_benefits.agency_id}",
        ]
    lines += ["", "Agency source databases (sql adapter):"]
    lines += _columns(result.source_files.items())
    if serving:
        lines += ["", "Stop with Ctrl+C."]
    return "\n".join(lines)


@click.command("demo")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--seed",
    default=1,
    show_default=True,
    type=int,
    help="Same seed, same persons, identifiers and records.",
)
@click.option("--persons", default=1000, hidden=True, type=click.IntRange(1, MAX_PERSONS))
@click.option("--no-serve", is_flag=True, help="Seed and print what to try, then exit.")
def demo_command(port: int, seed: int, persons: int, no_serve: bool) -> None:
    """Seed synthetic agencies, persons, clients and logins, then serve on 127.0.0.1."""
    app = create_app(test_config=_overrides(port))
    if app.config["ENV"] == "production":
        raise click.ClickException(
            "the demo seeds known passwords and synthetic persons; "
            "it refuses to run with CASEBROKER_ENV=production"
        )
    try:
        result, elapsed = _seed(app, seed, persons)
    except DemoSeedError as exc:
        raise click.ClickException(str(exc)) from None
    base_url = f"http://{HOST}:{port}"
    click.echo(what_to_try(base_url, app.config["ISSUER"], result, elapsed, not no_serve))
    if not no_serve:
        run_simple(HOST, port, app, threaded=True)
