"""The reads every lookup makes use the index built for them, on either database, however many
consents and cases the country holds: a planner that walks all active consents or all of an
agency's cases turns a lookup of milliseconds into one of tens of them at national scale."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from broker.cases.service import _LIVE_CASES, today
from consent.service import _IN_FORCE

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PARAMS = {
    "person": uuid.uuid4(),
    "grantee": "social-services",
    "agency": "social-services",
    "purpose": "benefit-eligibility",
    "now": NOW,
    "on": today(NOW),
    "officer": None,
}


class Explain(Executable, ClauseElement):
    """``EXPLAIN`` of a statement, executed with its parameters bound the usual way."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain_postgresql(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN " + compiler.process(element.statement, **kw)


@compiles(Explain, "sqlite")
def _explain_sqlite(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN QUERY PLAN " + compiler.process(element.statement, **kw)


def plan(session, statement) -> str:
    """The plan the database would follow, as text. PostgreSQL is told to avoid sequential
    scans: on the tests' near-empty tables it would rightly prefer one, and what is checked
    here is that the index serves every condition, not the cost model's choice at this size."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))
    result = session.execute(Explain(statement), PARAMS)
    # Straight from the driver: the statement's own column types do not fit the plan's rows.
    return "\n".join(str(row[-1]) for row in result.cursor.fetchall())


@pytest.mark.parametrize(
    ("statement", "index", "served"),
    [
        (
            _IN_FORCE.statement,
            "ix_consent_lookup",
            ["person_id", "grantee_agency_id", "valid_until"],
        ),
        (
            _LIVE_CASES.statement,
            "ix_case_registration_person_agency",
            ["person_id", "agency_id", "status"],
        ),
    ],
    ids=["consents-in-force", "live-cases"],
)
def test_a_lookup_read_uses_its_index(db_session, statement, index, served):
    found = plan(db_session, statement)
    assert index in found, found
    for column in served:
        assert re.search(rf"\b{column}\b", found), f"{column} is not served by the index:\n{found}"
