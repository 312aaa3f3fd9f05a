"""``casebroker policy validate|explain|test`` through click's runner, without an app."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from policies import DEFAULT_POLICY_DIR, PolicyEngine
from policies.cli import policy_group


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(policy_group, list(args), env={"CASEBROKER_POLICY_DIR": None})
    return result.exit_code, result.stdout, result.stderr


def broken_dir(root: Path) -> Path:
    shutil.copytree(DEFAULT_POLICY_DIR / "agreements", root / "agreements")
    shutil.copy(DEFAULT_POLICY_DIR / "casebroker.cedarschema", root)
    tax = root / "agreements" / "tax.cedar"
    tax.write_text(tax.read_text().replace('@fields("benefit_type,monthly_amount,since")', ""))
    (root / "agreements" / "extra.cedar").write_text(
        '@id("dsa-typo") @legal_basis("statute") @fields("a")\n'
        'permit (principal, action, resource) when { context.purpos == "x" };\n'
    )
    return root


def test_validate_passes_on_the_packaged_policies() -> None:
    code, out, err = run("validate")
    assert code == 0, err
    count = len(PolicyEngine(DEFAULT_POLICY_DIR).policy_ids)
    assert out.startswith(f"{count} policies valid in ")


def test_validate_prints_each_problem(tmp_path: Path) -> None:
    code, _, err = run("validate", "--dir", str(broken_dir(tmp_path)))
    assert code == 1
    lines = err.splitlines()
    assert any(
        line.startswith("agreements/extra.cedar: dsa-typo: ") and "purpos" in line for line in lines
    )
    assert "agreements/tax.cedar: dsa-tax-benefits-tax-assessment: permit has no @fields" in lines


def test_validate_reads_the_directory_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        policy_group, ["validate"], env={"CASEBROKER_POLICY_DIR": str(broken_dir(tmp_path))}
    )
    assert result.exit_code == 1


def test_explain_prints_the_determining_policy() -> None:
    code, out, _ = run(
        "explain",
        "--requester=social-services",
        "--provider=tax",
        "--category=income",
        "--purpose=benefit-eligibility",
    )
    assert code == 0
    assert "decision:    permit" in out
    assert "policies:    dsa-social-services-income-benefit-eligibility" in out
    assert "fields:      tax_year, gross_income, taxable_income" in out
    assert "legal basis: statute" in out


def test_explain_json_for_a_forbid() -> None:
    code, out, _ = run(
        "explain",
        "--requester=tax",
        "--provider=health",
        "--category=health.summary",
        "--purpose=tax-assessment",
        "--consent",
        "--break-glass",
        "--json",
    )
    assert code == 0
    decision = json.loads(out)
    assert decision["permit"] is False
    assert decision["policy_ids"] == ["forbid-health-for-tax"]
    assert decision["reason"] == "health data is never shared for tax purposes"


def test_explain_needs_the_sensitivity_of_unknown_categories() -> None:
    args = ["explain", "--requester=a", "--provider=b", "--category=pets", "--purpose=x"]
    code, _, err = run(*args)
    assert code == 2
    assert "give --sensitivity" in err
    code, out, _ = run(*args, "--sensitivity=low", "--now=2026-01-01T00:00:00Z")
    assert code == 0
    assert "no data-sharing agreement covers pets from b for x" in out


def test_test_runs_the_packaged_table() -> None:
    code, out, err = run("test")
    assert code == 0, err
    assert out.strip().endswith("0 failed")


def test_test_reports_failures(tmp_path: Path) -> None:
    table = tmp_path / "decisions.toml"
    table.write_text(
        'now = 2026-01-15T09:00:00Z\n[[case]]\nname = "wrong on purpose"\n'
        'requester = "tax"\nprovider = "health"\ncategory = "health.summary"\n'
        'purpose = "tax-assessment"\nexpect = "permit"\n'
    )
    code, out, err = run("test", str(table))
    assert code == 1
    assert "FAIL wrong on purpose" in err
    assert "expected permit, got deny (health data is never shared for tax purposes)" in err
    assert "1 cases, 0 passed, 1 failed" in out


def test_test_rejects_a_malformed_table(tmp_path: Path) -> None:
    table = tmp_path / "decisions.toml"
    table.write_text('[[case]]\nrequester = "tax"\nexpected = "permit"\n')
    code, _, err = run("test", str(table))
    assert code == 1
    assert "case 1: unknown key(s) expected" in err
