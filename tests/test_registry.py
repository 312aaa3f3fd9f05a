"""The registry file: ``casebroker registry apply`` and ``export``, and names in two languages."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from audit.models import AuditEvent
from broker.cli import cli
from broker.models import Agency, DataCategory, Purpose, Source
from broker.registry import Names, RegistryFileError, apply, export
from consent.notifications import render


def source_db(tmp_path: Path) -> str:
    path = tmp_path / "tax-source.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE income (tin TEXT, tax_year INTEGER, gross_income INTEGER)")
    return f"sqlite:///{path}"


REGISTRY = textwrap.dedent(
    """
        [[agencies]]
        id = "tax"
        name = "AGENCY_NAME"
        sector = "revenue"
        labels.fr.name = "Administration fiscale"

        [[agencies]]
        id = "housing"
        name = "Housing Office"
        sector = "housing"

        [[categories]]
        id = "income"
        name = "Income"
        description = "Declared income per tax year."
        sensitivity = "high"
        fields = ["tax_year", "gross_income"]
        labels.fr = { name = "Revenus", description = "Revenus déclarés." }

        [[purposes]]
        id = "rent-support"
        name = "Rent support"
        max_consent_days = 90
        labels.fr.name = "Aide au loyer"

        [[capacities]]
        id = "tenant"
        name = "Tenant"
        labels.fr.name = "Locataire"

        [[sources]]
        id = "tax-db"
        agency = "tax"
        adapter = "sql"
        categories = ["income"]
        timeout_ms = 1500
        [sources.config]
        url = "SOURCE_URL"
        identifier_scheme = "tin"
        [sources.config.queries]
        income = "SELECT tax_year, gross_income FROM income WHERE tin = :identifier"
        """
)


def registry_text(url: str, agency_name: str = "Tax Administration") -> str:
    return REGISTRY.replace("AGENCY_NAME", agency_name).replace("SOURCE_URL", url)


def write(tmp_path: Path, text: str, name: str = "registry.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_toml(text: str) -> dict:
    import tomllib

    return tomllib.loads(text)


def registry_events(session) -> list[dict]:
    rows = session.scalars(
        select(AuditEvent.record).where(AuditEvent.kind == "registry.changed")
    ).all()
    return [json.loads(r) for r in rows]


def test_apply_creates_then_changes_nothing_then_updates_what_changed(db_session, tmp_path):
    url = source_db(tmp_path)
    changes = apply(db_session, load_toml(registry_text(url)))
    db_session.commit()
    assert [(c.kind, c.id, c.action) for c in changes] == [
        ("agencies", "tax", "created"),
        ("agencies", "housing", "created"),
        ("categories", "income", "created"),
        ("purposes", "rent-support", "created"),
        ("capacities", "tenant", "created"),
        ("sources", "tax-db", "created"),
    ]
    source = db_session.get(Source, "tax-db")
    assert source.agency_id == "tax" and source.timeout_ms == 1500
    assert [c.id for c in source.categories] == ["income"]
    assert db_session.get(DataCategory, "income").fields == ["tax_year", "gross_income"]
    assert db_session.get(Purpose, "rent-support").labels == {"fr": {"name": "Aide au loyer"}}

    events = registry_events(db_session)
    assert len(events) == 6 and {e["channel"] for e in events} == {"cli"}
    created = next(e for e in events if e["id"] == "tax-db")
    assert "config" in created["attributes"] and "categories" in created["attributes"]
    assert url not in json.dumps(events), "a source's configuration must not reach the log"

    assert apply(db_session, load_toml(registry_text(url))) == []
    db_session.commit()
    assert len(registry_events(db_session)) == 6

    changes = apply(db_session, load_toml(registry_text(url, "Revenue Agency")))
    db_session.commit()
    assert [(c.id, c.action, c.attributes) for c in changes] == [("tax", "updated", ("name",))]
    assert db_session.get(Agency, "tax").name == "Revenue Agency"


def test_export_is_a_document_apply_takes_back_unchanged(db_session, tmp_path):
    apply(db_session, load_toml(registry_text(source_db(tmp_path))))
    db_session.commit()
    document = export(db_session)
    assert {a["id"] for a in document["agencies"]} == {"tax", "housing"}
    assert json.loads(json.dumps(document)) == document
    assert apply(db_session, document) == []


def test_a_source_can_move_categories_and_be_disabled(db_session, tmp_path):
    url = source_db(tmp_path)
    document = load_toml(registry_text(url))
    apply(db_session, document)
    db_session.commit()
    document["categories"].append(
        {"id": "address", "name": "Address", "sensitivity": "medium", "fields": ["street"]}
    )
    source = document["sources"][0]
    source["categories"] = ["address"]
    source["config"]["queries"] = {
        "address": "SELECT tin AS street FROM income WHERE tin = :identifier"
    }
    source["status"] = "disabled"
    changes = apply(db_session, document)
    db_session.commit()
    changed = {c.id: c.attributes for c in changes}
    assert set(changed["tax-db"]) == {"categories", "config", "status"}
    row = db_session.get(Source, "tax-db")
    db_session.refresh(row)
    assert [c.id for c in row.categories] == ["address"] and row.status == "disabled"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["agencies"][0].update(colour="red"), "agencies.0.colour: Unknown field"),
        (lambda d: d["agencies"][0].update(id="Tax Office"), "agencies.0.id"),
        (lambda d: d["agencies"].append(dict(d["agencies"][0])), "'tax' appears more than once"),
        (lambda d: d["sources"][0].update(agency="nobody"), "agency 'nobody' is not registered"),
        (lambda d: d["sources"][0].update(categories=["dreams"]), "not registered: dreams"),
        (lambda d: d["sources"][0].update(timeout_ms=0), "sources.0.timeout_ms"),
        (lambda d: d["sources"][0].update(adapter="carrier-pigeon"), "carrier-pigeon"),
        (lambda d: d["sources"][0]["config"].pop("queries"), "'tax-db'"),
        (
            lambda d: d["sources"][0]["config"]["queries"].update(
                income="DELETE FROM income WHERE tin = :identifier"
            ),
            "'tax-db'",
        ),
        (
            lambda d: d["purposes"][0].update(break_glass_allowed=True),
            "must require a justification",
        ),
        (lambda d: d["categories"][0].update(fields=["a", "a"]), "Fields must not repeat"),
        (lambda d: d["categories"][0].update(sensitivity="secret"), "sensitivity"),
        (lambda d: d["agencies"][0]["labels"].update(de={"name": "x"}), "labels"),
        (lambda d: d.update(persons=[]), "persons: Unknown field"),
    ],
)
def test_a_bad_file_is_refused_whole_and_says_why(db_session, tmp_path, change, expected):
    document = load_toml(registry_text(source_db(tmp_path)))
    change(document)
    with pytest.raises(RegistryFileError) as raised:
        apply(db_session, document)
    db_session.rollback()
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems
    assert db_session.scalar(select(func.count()).select_from(Agency)) == 0
    assert registry_events(db_session) == []


def test_the_command_applies_dry_runs_and_exports(app, tmp_path):
    runner = app.test_cli_runner()
    path = write(tmp_path, registry_text(source_db(tmp_path)))
    dry = runner.invoke(cli, ["registry", "apply", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "tax-db" in dry.output and "dry run: nothing written" in dry.output
    assert json.loads(runner.invoke(cli, ["registry", "export"]).output)["agencies"] == []

    done = runner.invoke(cli, ["registry", "apply", str(path)])
    assert done.exit_code == 0 and "6 changes made" in done.output
    again = runner.invoke(cli, ["registry", "apply", str(path)])
    assert "nothing to change" in again.output

    exported = runner.invoke(cli, ["registry", "export"])
    as_json = write(tmp_path, exported.output, "registry.json")
    assert "nothing to change" in runner.invoke(cli, ["registry", "apply", str(as_json)]).output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[[agencies]\nid =", "not valid TOML"),
        ('agencies = "tax"', "agencies"),
        ("\xff\xfe", "not valid TOML"),
    ],
)
def test_the_command_reports_unreadable_files(app, tmp_path, text, expected):
    path = tmp_path / "broken.toml"
    path.write_bytes(text.encode("latin-1"))
    result = app.test_cli_runner().invoke(cli, ["registry", "apply", str(path)])
    assert result.exit_code == 1 and "was not applied" in result.output
    assert expected in result.output


def test_names_follow_the_reader_and_fall_back_to_english(db_session, tmp_path):
    apply(db_session, load_toml(registry_text(source_db(tmp_path))))
    db_session.commit()
    french, english = Names(db_session, "fr"), Names(db_session, "en")
    assert french.agency("tax") == "Administration fiscale" and english.agency("tax") == (
        "Tax Administration"
    )
    assert french.agency("housing") == "Housing Office", "no label: the English name"
    assert french.category("income") == "Revenus"
    assert french.purpose("rent-support") == "Aide au loyer"
    assert french.capacity("tenant") == "Locataire" and english.capacity("tenant") == "Tenant"
    assert Names(db_session, "xx").agency("tax") == "Tax Administration"
    assert french.agency("gone") == "gone" and french.agency(None) == ""

    subject, text = render(
        "consent.requested",
        {"grantee": "tax", "purpose": "rent-support", "categories": ["income"]},
        english,
        "",
    )
    assert "Tax Administration asks" in subject and "Administration fiscale demande" in subject
    english_part, french_part = text.split("\n\n", 1)
    assert "Income" in english_part and "Rent support" in english_part
    assert "Revenus" in french_part and "Aide au loyer" in french_part


def test_the_documented_example_applies(db_session, monkeypatch):
    monkeypatch.setenv("HOUSING_API_CLIENT_SECRET", "not-a-real-secret")
    text = (Path(__file__).parent.parent / "docs" / "registry.md").read_text(encoding="utf-8")
    example = text.split("<!-- registry-example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    changes = apply(db_session, load_toml(example))
    assert {(c.kind, c.id) for c in changes} == {
        ("agencies", "tax"),
        ("agencies", "housing"),
        ("categories", "income"),
        ("categories", "tenancy"),
        ("purposes", "rent-support"),
        ("capacities", "tenant"),
        ("sources", "tax-db"),
        ("sources", "housing-api"),
    }
    db_session.rollback()


def test_the_demo_registry_exports_and_applies_back_unchanged(app):
    from lookup_world import make_world

    make_world(app, persons=4)
    with app.extensions["casebroker.db"].sessionmaker() as session:
        document = json.loads(json.dumps(export(session)))
        assert {s["id"] for s in document["sources"]} >= {"tax-db", "health-db"}
        assert document["agencies"][0]["labels"]["fr"]["name"]
        assert apply(session, document) == []
