"""Policy set versions: recorded once, with their files, by whichever node decides first."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

import audit
from audit import policy_versions
from audit.models import AuditPolicyVersion
from policies import PolicyEngine

POLICIES = Path(__file__).resolve().parent.parent / "policies"
FILES = {"a.cedar": "permit(principal, action, resource);"}


def rows(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditPolicyVersion))


def test_first_use_records_once_and_a_second_node_does_not_again(make_app):
    first, second = make_app(), make_app()
    version = "ab" * 32
    with (
        first.extensions["casebroker.db"].sessionmaker() as one,
        second.extensions["casebroker.db"].sessionmaker() as other,
    ):
        record = policy_versions.first_use(one, version, lambda v: FILES, audit.event_time())
        assert record is not None and record["kind"] == "policy.loaded"
        assert set(record["files"]) == {"a.cedar"} and len(record["files"]["a.cedar"]) == 64
        one.commit()
        assert policy_versions.first_use(other, version, lambda v: FILES, "t") is None
        assert policy_versions.first_use(one, version, lambda v: FILES, "t") is None
        assert rows(one) == 1 and one.get(AuditPolicyVersion, version).files == FILES


def test_a_version_the_engine_no_longer_holds_is_left_for_later(app):
    with app.extensions["casebroker.db"].sessionmaker() as session:
        assert policy_versions.first_use(session, "cd" * 32, lambda v: None, "t") is None
        assert rows(session) == 0


def test_the_engine_keeps_the_files_of_recent_versions(tmp_path):
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    engine = PolicyEngine(directory, reload_interval=0)
    before = engine.version
    assert before is not None and engine.files_of(before)["agreements/tax.cedar"] == (
        directory / "agreements" / "tax.cedar"
    ).read_text(encoding="utf-8")
    extra = directory / "agreements" / "zz-note.cedar"
    extra.write_text("// no policy, a comment only\n", encoding="utf-8")
    assert engine.decide_many([]) == []  # a decision checks the files first, and reloads
    after = engine.version
    assert after != before and "agreements/zz-note.cedar" in engine.files_of(after)
    assert engine.files_of(before) is not None, "a decision just before the reload is recorded"
    assert engine.files_of("ef" * 32) is None
