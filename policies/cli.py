"""Operator commands: ``casebroker policy validate|explain|test``; none of them needs the app.

The policy directory is ``--dir``, else ``CASEBROKER_POLICY_DIR``, else the app's ``POLICY_DIR``
when an app context is active, else the packaged policies.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app, has_app_context

from policies.engine import DecisionRequest, PolicyEngine, load_snapshot
from policies.loader import DEFAULT_POLICY_DIR, PolicyLoadError
from policies.table import DEMO_SENSITIVITY, TABLE_NAME, TableError, load_table, run_case

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="CASEBROKER_POLICY_DIR",
    help="Policy directory (default: the app's POLICY_DIR, else the packaged policies).",
)


def policy_dir(directory: Path | None) -> Path:
    """The directory the command works on."""
    if directory is not None:
        return directory
    if has_app_context() and current_app.config.get("POLICY_DIR"):
        return Path(current_app.config["POLICY_DIR"])
    return DEFAULT_POLICY_DIR


@click.group("policy")
def policy_group() -> None:
    """Data-sharing agreements: validate, explain a decision, run the decision table."""


@policy_group.command("validate")
@dir_option
def validate(directory: Path | None) -> None:
    """Check the schema, every policy against it, and every agreement's annotations."""
    directory = policy_dir(directory)
    try:
        snapshot = load_snapshot(directory)
    except PolicyLoadError as exc:
        problems = exc.problems + exc.annotation_problems
    else:
        problems = snapshot.problems
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        raise SystemExit(1)
    click.echo(f"{len(snapshot.policies)} policies valid in {directory}")


@policy_group.command("explain")
@click.option("--requester", required=True, help="Requesting agency id.")
@click.option("--provider", required=True, help="Providing agency id.")
@click.option("--category", required=True, help="Data category id.")
@click.option("--purpose", required=True, help="Purpose id.")
@click.option("--sensitivity", type=click.Choice(["low", "medium", "high", "special"]))
@click.option("--consent/--no-consent", default=False, help="An active consent covers it.")
@click.option("--justification/--no-justification", default=False, help="A justification given.")
@click.option("--break-glass", is_flag=True, help="Effective break-glass (implies justification).")
@click.option(
    "--open-case/--no-open-case",
    default=True,
    show_default=True,
    help="The requester has an open case on the person for the purpose.",
)
@click.option("--capacity", "capacities", multiple=True, help="A capacity of the open case.")
@click.option("--officer-assigned", is_flag=True, help="The officer is assigned to the case.")
@click.option("--officer-role", "officer_roles", multiple=True, help="An officer's role.")
@click.option("--client", "client_id", default=None, help="Requesting client id.")
@click.option("--now", "now_text", default=None, help="Decision time, ISO 8601 (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
@dir_option
def explain(
    requester: str,
    provider: str,
    category: str,
    purpose: str,
    sensitivity: str | None,
    consent: bool,
    justification: bool,
    break_glass: bool,
    open_case: bool,
    capacities: tuple[str, ...],
    officer_assigned: bool,
    officer_roles: tuple[str, ...],
    client_id: str | None,
    now_text: str | None,
    as_json: bool,
    directory: Path | None,
) -> None:
    """Show the decision and the determining policies for a hypothetical request."""
    sensitivity = sensitivity or DEMO_SENSITIVITY.get(category)
    if sensitivity is None:
        raise click.UsageError(f"unknown category {category!r}: give --sensitivity")
    now = datetime.now(UTC)
    if now_text:
        try:
            now = datetime.fromisoformat(now_text)
        except ValueError:
            raise click.BadParameter("not an ISO 8601 time", param_hint="--now") from None
    engine = PolicyEngine(policy_dir(directory), reload_interval=3600)
    request = DecisionRequest(
        requester=requester,
        client_id=client_id or f"{requester}-system",
        officer_roles=officer_roles,
        provider=provider,
        category=category,
        sensitivity=sensitivity,
        purpose=purpose,
        consent=consent,
        justification=justification or break_glass,
        break_glass=break_glass,
        now=now if now.tzinfo else now.replace(tzinfo=UTC),
        open_case=open_case,
        case_capacities=capacities,
        officer_assigned=officer_assigned,
    )
    decision = engine.decide(request)
    if as_json:
        click.echo(json.dumps(asdict(decision), indent=2))
        return
    click.echo(f"decision:    {'permit' if decision.permit else 'deny'}")
    click.echo(f"policies:    {', '.join(decision.policy_ids) or '(none: default deny)'}")
    click.echo(f"legal basis: {decision.legal_basis or '-'}")
    fields = decision.obligations.fields if decision.obligations else ()
    click.echo(f"fields:      {', '.join(fields) or '-'}")
    click.echo(f"reason:      {decision.reason}")
    for error in decision.errors:
        click.echo(f"error:       {error}", err=True)


@policy_group.command("test")
@click.argument("table", required=False, type=click.Path(dir_okay=False, path_type=Path))
@dir_option
def test(table: Path | None, directory: Path | None) -> None:
    """Run a decision table (default: decisions.toml in the policy directory)."""
    directory = policy_dir(directory)
    table = table or directory / TABLE_NAME
    try:
        cases = load_table(table)
    except TableError as exc:
        raise click.ClickException(str(exc)) from None
    engine = PolicyEngine(directory, reload_interval=3600)
    if engine.last_error:
        raise click.ClickException(f"policy set rejected: {engine.last_error}")
    failed = 0
    for case in cases:
        problems = run_case(engine, case)
        if problems:
            failed += 1
            click.echo(f"FAIL {case.name}", err=True)
            for problem in problems:
                click.echo(f"  {problem}", err=True)
    click.echo(f"{len(cases)} cases, {len(cases) - failed} passed, {failed} failed")
    if failed:
        raise SystemExit(1)
