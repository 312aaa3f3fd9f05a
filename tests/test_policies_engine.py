"""The policy engine on small policy folders written per test."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policies import DEFAULT_POLICY_DIR, DecisionRequest, PolicyEngine, validate_directory

NOW = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)

INCOME = """
@id("dsa-income")
@legal_basis("statute")
@fields("tax_year,gross_income")
permit (principal == Agency::"social-services", action == Action::"lookup",
        resource == DataSet::"tax/income")
when { context.purpose == "benefit-eligibility" };
"""

INCOME_EXTRA = """
@id("dsa-income-extra")
@legal_basis("consent")
@fields("gross_income,employer")
permit (principal == Agency::"social-services", action == Action::"lookup",
        resource == DataSet::"tax/income")
when { context.purpose == "benefit-eligibility" && context.consent };
"""

FORBID_HIGH = """
@id("forbid-high")
@reason("high-sensitivity data is paused")
forbid (principal, action, resource)
when { resource.category.sensitivity == "high" };
"""


def request(**changes: object) -> DecisionRequest:
    base = DecisionRequest(
        requester="social-services",
        client_id="social-services-system",
        officer_roles=(),
        provider="tax",
        category="income",
        sensitivity="high",
        purpose="benefit-eligibility",
        consent=False,
        justification=False,
        break_glass=False,
        now=NOW,
    )
    return replace(base, **changes)


def make_dir(root: Path, **files: str) -> Path:
    """A policy folder with the packaged schema and the given ``name=text`` policy files."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEFAULT_POLICY_DIR / "casebroker.cedarschema", root)
    for name, text in files.items():
        (root / f"{name}.cedar").write_text(text)
    return root


def rewrite(path: Path, text: str) -> None:
    """Replace a file atomically and make sure its stat changes, as a deploy would."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    staged = path.with_name(path.name + ".new")
    staged.write_text(text)
    os.utime(staged, ns=(before + 1_000_000_000, before + 1_000_000_000))
    os.replace(staged, path)


def test_permit_carries_fields_and_legal_basis(tmp_path: Path) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME))
    decision = engine.decide(request())
    assert decision.permit
    assert decision.policy_ids == ("dsa-income",)
    assert decision.legal_basis == "statute"
    assert decision.obligations is not None
    assert decision.obligations.fields == ("tax_year", "gross_income")
    assert decision.errors == ()


def test_several_permits_union_fields_and_join_bases(tmp_path: Path) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME + INCOME_EXTRA))
    decision = engine.decide(request(consent=True))
    assert decision.policy_ids == ("dsa-income", "dsa-income-extra")
    assert decision.legal_basis == "consent,statute"
    assert decision.obligations is not None
    assert sorted(decision.obligations.fields) == ["employer", "gross_income", "tax_year"]


def test_forbid_wins_over_permit(tmp_path: Path) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME, forbid=FORBID_HIGH))
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.policy_ids == ("forbid-high",)
    assert decision.reason == "high-sensitivity data is paused"
    assert decision.obligations is None
    assert engine.decide(request(sensitivity="medium")).permit


def test_evaluation_error_fails_closed(tmp_path: Path) -> None:
    overflowing = """
    @id("forbid-overflow") @reason("never shown")
    forbid (principal, action, resource)
    when { context.now.offset(duration("9223372036854775807ms")) > context.now };
    """
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME, forbid=overflowing))
    assert engine.validate() == []
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.reason == "policy error: the policies could not be evaluated"
    assert "forbid-overflow" in decision.errors[0]


def test_default_deny_names_what_is_missing(tmp_path: Path) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME))
    decision = engine.decide(request(purpose="road-safety"))
    assert not decision.permit
    assert decision.policy_ids == ()
    assert decision.reason == "no data-sharing agreement covers income from tax for road-safety"


def test_deny_hints_consent_justification_and_break_glass(tmp_path: Path) -> None:
    policies = """
    @id("dsa-consent") @legal_basis("consent") @fields("tax_year")
    permit (principal, action, resource == DataSet::"tax/income")
    when { context.purpose == "a" && context.consent };
    @id("dsa-justified") @legal_basis("statute") @fields("tax_year")
    permit (principal, action, resource == DataSet::"tax/income")
    when { context.purpose == "b" && context.justification };
    @id("dsa-glass") @legal_basis("vital-interest") @fields("tax_year")
    permit (principal, action, resource == DataSet::"tax/income")
    when { context.purpose == "c" && context.break_glass };
    @id("dsa-both") @legal_basis("consent") @fields("tax_year")
    permit (principal, action, resource == DataSet::"tax/income")
    when { context.purpose == "d" && context.consent && context.break_glass };
    """
    engine = PolicyEngine(make_dir(tmp_path, hints=policies))
    reasons = [d.reason for d in engine.decide_many([request(purpose=p) for p in "abcd"])]
    assert reasons == [
        "consent required",
        "justification required",
        "break-glass required",
        "consent and break-glass required",
    ]


def test_validity_window_uses_the_decision_time(tmp_path: Path) -> None:
    windowed = INCOME.replace(
        'context.purpose == "benefit-eligibility"',
        'context.purpose == "benefit-eligibility" && '
        'context.now >= datetime("2024-01-01") && context.now < datetime("2025-01-01")',
    )
    engine = PolicyEngine(make_dir(tmp_path, income=windowed))
    assert engine.decide(request(now=datetime(2024, 6, 1, tzinfo=UTC))).permit
    assert not engine.decide(request(now=datetime(2025, 1, 1, tzinfo=UTC))).permit
    assert engine.decide(request(now=datetime(2024, 12, 31, 23, 59, 59))).permit


@pytest.mark.parametrize(
    "annotation",
    ['@obligation_notify_subject("true")', '@retention_days("30")'],
)
def test_unknown_obligation_denies_with_error(tmp_path: Path, annotation: str) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=f"{annotation}\n{INCOME}"))
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.reason.startswith("policy error: ")
    assert decision.obligations is None
    assert len(decision.errors) == 1
    key = annotation[1 : annotation.index("(")]
    assert f"@{key}" in decision.errors[0]
    assert any(f"@{key}" in problem for problem in engine.validate())


@pytest.mark.parametrize(
    ("removed", "message"),
    [
        ('@fields("tax_year,gross_income")', "permit has no @fields"),
        ('@legal_basis("statute")', "permit has no @legal_basis"),
    ],
)
def test_permit_missing_annotation_is_reported_and_denied(
    tmp_path: Path, removed: str, message: str
) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME.replace(removed, "")))
    assert engine.validate() == [f"income.cedar: dsa-income: {message}"]
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.errors == (f"dsa-income: {message}",)


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ('@legal_basis("statute") @fields("*")', "'*' is not allowed"),
        ('@legal_basis("statute") @fields("tax_year,,gross_income")', "empty field name"),
        ('@legal_basis("statute") @fields("tax_year,tax_year")', "lists 'tax_year' twice"),
        ('@legal_basis("because") @fields("tax_year")', "not one of consent, statute"),
    ],
)
def test_bad_annotation_values_are_defects(tmp_path: Path, annotations: str, message: str) -> None:
    text = INCOME.replace('@legal_basis("statute")\n@fields("tax_year,gross_income")', annotations)
    engine = PolicyEngine(make_dir(tmp_path, income=text))
    problems = engine.validate()
    assert len(problems) == 1
    assert message in problems[0]
    assert not engine.decide(request()).permit


def test_consent_basis_must_read_consent(tmp_path: Path) -> None:
    careless = INCOME.replace('@legal_basis("statute")', '@legal_basis("consent")')
    engine = PolicyEngine(make_dir(tmp_path, income=careless))
    assert engine.validate() == [
        "income.cedar: dsa-income: @legal_basis is consent but the condition never reads "
        "context.consent"
    ]
    assert not engine.decide(request(consent=False)).permit


def test_forbid_without_reason_is_reported_but_still_forbids(tmp_path: Path) -> None:
    silent = FORBID_HIGH.replace('@reason("high-sensitivity data is paused")', "")
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME, forbid=silent))
    assert engine.validate() == [
        "forbid.cedar: forbid-high: forbid has no @reason for the requester"
    ]
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.reason == "denied by policy forbid-high"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("permit (principal, action, resource) when {", "income.cedar: cannot parse"),
        (INCOME.replace('@id("dsa-income")', ""), "income.cedar: a permit policy has no @id"),
        (INCOME + INCOME, "@id 'dsa-income' is also used in income.cedar"),
        (INCOME.replace("context.purpose", "context.purpos"), "dsa-income: "),
        (INCOME.replace('"dsa-income"', '"DSA income"'), "must be lower-case"),
    ],
)
def test_unusable_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=text))
    assert not engine.loaded
    assert engine.last_error is not None
    assert any(message in problem for problem in engine.validate())
    decision = engine.decide(request())
    assert not decision.permit
    assert decision.reason == "policy error: no valid policy set is loaded"
    assert decision.errors


def test_schema_must_fit_the_engine(tmp_path: Path) -> None:
    folder = make_dir(tmp_path, income=INCOME)
    schema = folder / "casebroker.cedarschema"
    schema.write_text(schema.read_text().replace("entity Agency;", "entity Agency = { x: Long };"))
    problems = validate_directory(folder)
    assert problems
    assert problems[0].startswith("the schema does not fit the engine's entities")


def test_reload_picks_up_a_changed_file(tmp_path: Path) -> None:
    folder = make_dir(tmp_path, income=INCOME)
    engine = PolicyEngine(folder, reload_interval=0)
    first = engine.version
    assert engine.decide(request()).obligations.fields == ("tax_year", "gross_income")
    rewrite(folder / "income.cedar", INCOME.replace("tax_year,gross_income", "tax_year"))
    assert engine.decide(request()).obligations.fields == ("tax_year",)
    assert engine.version != first
    (folder / "income.cedar").unlink()
    assert engine.decide(request()).reason.startswith("no data-sharing agreement")
    assert engine.policy_ids == ()


def test_reload_waits_for_the_interval(tmp_path: Path) -> None:
    folder = make_dir(tmp_path, income=INCOME)
    engine = PolicyEngine(folder, reload_interval=3600)
    rewrite(folder / "income.cedar", INCOME.replace("tax_year,gross_income", "tax_year"))
    assert engine.decide(request()).obligations.fields == ("tax_year", "gross_income")


def test_broken_file_keeps_the_last_good_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_dir(tmp_path, income=INCOME)
    engine = PolicyEngine(folder, reload_interval=0)
    good = engine.version
    with caplog.at_level(logging.ERROR, logger="casebroker.policies"):
        rewrite(folder / "extra.cedar", "permit (principal, action, resource) when {")
        decision = engine.decide(request())
    assert decision.permit
    assert engine.version == good
    assert engine.last_error is not None
    assert "extra.cedar: cannot parse" in engine.last_error
    assert "keeping the last good set" in caplog.text

    (folder / "extra.cedar").unlink()
    engine.decide(request())
    assert engine.last_error is None


def test_threads_decide_while_files_change(tmp_path: Path) -> None:
    folder = make_dir(tmp_path, income=INCOME)
    engine = PolicyEngine(folder, reload_interval=0)
    narrow = INCOME.replace("tax_year,gross_income", "tax_year")
    seen: set[tuple[str, ...]] = set()
    failures: list[BaseException] = []

    def decide() -> None:
        try:
            for _ in range(60):
                decision = engine.decide(request())
                assert decision.permit, decision
                seen.add(decision.obligations.fields)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=decide) for _ in range(4)]
    for thread in threads:
        thread.start()
    for round_ in range(10):
        rewrite(folder / "income.cedar", narrow if round_ % 2 == 0 else INCOME)
    for thread in threads:
        thread.join()
    assert failures == []
    assert seen <= {("tax_year", "gross_income"), ("tax_year",)}


def test_decide_many_equals_decide(tmp_path: Path) -> None:
    engine = PolicyEngine(make_dir(tmp_path, income=INCOME + INCOME_EXTRA, forbid=FORBID_HIGH))
    requests = [
        request(),
        request(sensitivity="medium"),
        request(sensitivity="medium", consent=True, requester="health"),
        request(provider="health", category="health.summary", sensitivity="special"),
        request(purpose="road-safety", category="address", sensitivity="medium"),
    ]
    assert engine.decide_many(requests) == [engine.decide(r) for r in requests]
    assert engine.decide_many([]) == []


def test_packaged_policies_are_valid() -> None:
    engine = PolicyEngine(DEFAULT_POLICY_DIR)
    assert engine.validate() == []
    assert engine.loaded
    assert "forbid-health-for-tax" in engine.policy_ids
    assert len(engine.version or "") == 64
