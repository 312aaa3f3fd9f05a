"""Every row of the packaged decision table, as its own test case."""

from __future__ import annotations

import pytest

from policies import DEFAULT_POLICY_DIR, PolicyEngine
from policies.table import DEFAULT_TABLE, Case, load_table, run_case

CASES = load_table(DEFAULT_TABLE)


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(DEFAULT_POLICY_DIR, reload_interval=3600)


def test_every_policy_determines_some_row(engine: PolicyEngine) -> None:
    decisions = engine.decide_many([case.request for case in CASES])
    determining = {policy_id for decision in decisions for policy_id in decision.policy_ids}
    assert len(CASES) >= 25
    assert determining == set(engine.policy_ids)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decision(engine: PolicyEngine, case: Case) -> None:
    assert run_case(engine, case) == []
