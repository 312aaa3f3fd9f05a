"""Bulk case registration: ``casebroker cases import`` against a plain insert of the same rows.

    python bench/cases_import.py [--db sqlite|postgresql|both] [--rows 100000]

For each database, a fresh schema is migrated in a temporary folder (and, for PostgreSQL, a
temporary database on the server named by ``--pg-url``, dropped at the end), the registries
are seeded (agencies, purposes, capacities) with ``--rows`` persons known to one agency, and a
CSV file of one case per person is written. Then, timed:

* the import as the command runs it: parse and check every row (person, capacity, purposes,
  period), refuse duplicates, insert cases, purposes, assignees and one audit event per case,
  a transaction per batch;
* the baseline: the same rows inserted into the same tables by plain multi-row inserts, with
  no parsing, no checks and no audit events: what the database alone costs.

It prints rows per second for both and their ratio. This is a measurement: it exits 0 whatever
the figures (non-zero only when a database could not be set up or the import lost rows).
"""

from __future__ import annotations

import _path  # noqa: F401  (first: see _path.py)

# isort: split

import argparse
import csv
import io
import sys
import time
import uuid
from datetime import UTC, date, datetime

from _common import machine_summary, postgres_database, temporary_folder
from lookup import DEFAULT_PG_URL, databases
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, delete, func, insert, select
from sqlalchemy.orm import Session

console = Console(highlight=False)
AGENCY = "social-services"
SCHEME = "client-no"


def seed(session: Session, rows: int) -> None:
    """Registries, and ``rows`` persons with an identifier at the agency, in bulk."""
    from broker.cases.models import CaseCapacity
    from broker.demo_data import AGENCIES, CAPACITIES, PURPOSES
    from broker.models import Agency, Purpose
    from identity.models import IdentityLink, Person

    session.execute(
        insert(Agency), [{"id": a.id, "name": a.name, "sector": a.sector} for a in AGENCIES]
    )
    session.execute(
        insert(Purpose),
        [
            {
                "id": p.id,
                "name": p.name,
                "description": p.description,
                "max_consent_days": p.max_consent_days,
                "break_glass_allowed": p.break_glass_allowed,
                "justification_required": p.justification_required,
            }
            for p in PURPOSES
        ],
    )
    session.execute(
        insert(CaseCapacity),
        [{"id": i, "name": n, "description": d} for i, n, d in CAPACITIES],
    )
    for start in range(0, rows, 10_000):
        chunk = range(start, min(rows, start + 10_000))
        ids = [uuid.uuid4() for _ in chunk]
        session.execute(
            insert(Person),
            [
                {"id": pid, "given_name": "Bench", "family_name": f"P{n}",
                 "birth_date": date(1980, 1, 1)}
                for pid, n in zip(ids, chunk, strict=True)
            ],
        )  # fmt: skip
        session.execute(
            insert(IdentityLink),
            [
                {"person_id": pid, "agency_id": AGENCY, "scheme": SCHEME, "value": f"SS-{n:07d}"}
                for pid, n in zip(ids, chunk, strict=True)
            ],
        )
    session.commit()


def csv_text(rows: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["reference", "person", "capacity", "purposes", "starts_on", "teams"])
    for n in range(rows):
        writer.writerow(
            [
                f"CASE-{n:07d}",
                f"{SCHEME}:SS-{n:07d}",
                "applicant" if n % 2 else "beneficiary",
                "benefit-eligibility;child-protection",
                "2026-01-01",
                "benefits-north",
            ]
        )
    return out.getvalue()


def plain_insert(session: Session, rows: int) -> None:
    """The baseline: the same rows, already resolved, straight into the tables."""
    from broker.cases.models import Case, CaseAssignee, CasePurpose
    from identity.models import IdentityLink

    persons = dict(session.execute(select(IdentityLink.value, IdentityLink.person_id)).all())
    now = datetime.now(UTC)
    for start in range(0, rows, 1000):
        cases, purposes, assignees = [], [], []
        for n in range(start, min(rows, start + 1000)):
            case_id = uuid.uuid4()
            cases.append(
                {
                    "id": case_id,
                    "agency_id": AGENCY,
                    "reference": f"BASE-{n:07d}",
                    "person_id": persons[f"SS-{n:07d}"],
                    "capacity_id": "applicant",
                    "starts_on": date(2026, 1, 1),
                    "ends_on": None,
                    "status": "open",
                    "created_at": now,
                }
            )
            purposes += [
                {"case_id": case_id, "purpose_id": "benefit-eligibility"},
                {"case_id": case_id, "purpose_id": "child-protection"},
            ]
            assignees.append({"case_id": case_id, "officer_id": None, "team": "benefits-north"})
        session.execute(insert(Case), cases)
        session.execute(insert(CasePurpose), purposes)
        session.execute(insert(CaseAssignee), assignees)
        session.commit()


def measure(db: str, url: str, rows: int) -> tuple[float, float, int]:
    from broker.cases.importer import import_cases
    from broker.cases.models import Case
    from broker.migrate import upgrade

    engine = create_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        started = time.perf_counter()
        seed(session, rows)
        console.print(f"{db}: seeded {rows:,} persons in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        plain_insert(session, rows)
        baseline = time.perf_counter() - started
        session.execute(delete(Case))
        session.commit()
        text = csv_text(rows)
        started = time.perf_counter()
        report = import_cases(session, AGENCY, io.StringIO(text, newline=""))
        imported = time.perf_counter() - started
        count = session.scalar(select(func.count()).select_from(Case))
    engine.dispose()
    if report.rejected:
        console.print(f"[red]{len(report.rejected)} rows refused: {report.rejected[:3]}[/]")
    return imported, baseline, count or 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = parser.parse_args(argv)
    console.print(f"machine: {machine_summary()}")
    table = Table(
        "database", "rows", "import s", "import rows/s", "plain insert rows/s", "import/plain",
        title="Bulk case registration",
    )  # fmt: skip
    failed = False
    for db in databases(args.db):
        with temporary_folder(f"casebroker-cases-{db}-") as folder:
            if db == "sqlite":
                imported, baseline, count = measure(db, f"sqlite:///{folder / 'b.db'}", args.rows)
            else:
                with postgres_database(args.pg_url, "cases") as url:
                    imported, baseline, count = measure(db, url, args.rows)
        failed |= count != args.rows
        table.add_row(
            db,
            f"{count:,}",
            f"{imported:.1f}",
            f"{args.rows / imported:,.0f}",
            f"{args.rows / baseline:,.0f}",
            f"{baseline / imported:.0%}",
        )
    console.print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
