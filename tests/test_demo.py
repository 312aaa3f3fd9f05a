"""The demo seed: registry, persons and links, source databases, clients, logins, command."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError
from click.testing import CliRunner
from conftest import ISSUER, TEST_KEK
from joserfc import jwt
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, func, select, text

from broker.cli import cli
from broker.db import get_db
from broker.demo_data import (
    CATEGORIES,
    DemoSeedError,
    generate_population,
    seed_demo,
)
from broker.migrate import upgrade
from broker.models import Agency, DataCategory, Purpose, Source
from broker.schema import metadata
from identity.models import Account, Client, IdentityLink, Officer, Person

PERSONS = 50
SEED = 7
IDENTIFIER_FORMATS = {
    "tax": ("tin", r"TIN-\d{7}"),
    "health": ("nhi", r"NHI-[A-Z]{2}\d{6}"),
    "social-services": ("client-no", r"SS-\d{6}"),
    "vehicle-registry": ("licence", r"DL-\d{8}"),
}
#: Where each category's records sit in its agency's source database.
SOURCE_TABLES = {
    "income": ("income", "tin"),
    "address": ("address", "tin"),
    "health.summary": ("health_summary", "nhi"),
    "benefits": ("benefits", "client_no"),
    "vehicle": ("vehicle", "licence"),
}


def _seed(app, seed=SEED, persons=PERSONS, issuer=None):
    with get_db(app).session() as session:
        return seed_demo(
            session,
            Path(app.config["INSTANCE_PATH"]),
            issuer or app.config["ISSUER"],
            seed=seed,
            persons=persons,
        )


@pytest.fixture
def seeded(make_app, tmp_path):
    app = make_app(INSTANCE_PATH=str(tmp_path / "inst"))
    return app, _seed(app)


def _session(app):
    return get_db(app).sessionmaker()


def _row_counts(app) -> dict[str, int]:
    with _session(app) as session:
        return {
            table.name: session.scalar(select(func.count()).select_from(table))
            for table in metadata.sorted_tables
        }


def _snapshot(app) -> list[tuple]:
    """Persons with their links, in a backend-independent order."""
    links = defaultdict(list)
    with _session(app) as session:
        for link in session.scalars(select(IdentityLink)):
            links[link.person_id].append((link.agency_id, link.scheme, link.value))
        persons = session.scalars(select(Person)).all()
    return sorted(
        (str(p.id), p.given_name, p.family_name, p.birth_date, tuple(sorted(links[p.id])))
        for p in persons
    )


def _source_rows(instance: Path) -> dict[str, list[tuple]]:
    rows = {}
    for table, column in SOURCE_TABLES.values():
        agency = next(path for path in (instance / "sources").glob("*.db") if _has(path, table))
        with sqlite3.connect(agency) as connection:
            query = f"SELECT * FROM {table} ORDER BY {column}, id"  # noqa: S608
            rows[table] = connection.execute(query).fetchall()
    return rows


def _has(path: Path, table: str) -> bool:
    with sqlite3.connect(path) as connection:
        found = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone()
    return found is not None


def test_seed_registers_agencies_categories_and_purposes(seeded):
    app, _ = seeded
    with _session(app) as session:
        agencies = {a.id: (a.name, a.sector, a.status) for a in session.scalars(select(Agency))}
        rows = session.scalars(select(DataCategory))
        categories = {c.id: (c.sensitivity, c.fields) for c in rows}
        purposes = {
            p.id: (p.max_consent_days, p.break_glass_allowed, p.justification_required)
            for p in session.scalars(select(Purpose))
        }
    assert agencies == {
        "tax": ("Tax Administration", "revenue", "active"),
        "health": ("Health Service", "health", "active"),
        "social-services": ("Social Services", "social", "active"),
        "vehicle-registry": ("Vehicle Registry", "transport", "active"),
    }
    assert categories == {
        "income": ("high", ["tax_year", "employer", "gross_income", "taxable_income", "currency"]),
        "address": ("medium", ["street", "postal_code", "city", "since"]),
        "benefits": ("high", ["benefit_type", "status", "monthly_amount", "since", "team"]),
        "health.summary": (
            "special",
            ["blood_type", "allergies", "chronic_conditions", "gp_practice", "last_visit"],
        ),
        "vehicle": ("low", ["registration_number", "make", "model", "first_registered", "status"]),
    }
    assert purposes == {
        "benefit-eligibility": (365, False, False),
        "child-protection": (180, True, True),
        "emergency-care": (30, True, True),
        "tax-assessment": (365, False, False),
        "road-safety": (90, False, True),
    }


def test_every_person_has_one_link_per_agency_in_its_scheme(seeded):
    app, result = seeded
    with _session(app) as session:
        persons = session.scalars(select(Person)).all()
        links = session.scalars(select(IdentityLink)).all()
    assert len(persons) == PERSONS == result.person_count
    assert len(links) == 4 * PERSONS
    by_person = defaultdict(dict)
    for link in links:
        scheme, pattern = IDENTIFIER_FORMATS[link.agency_id]
        assert link.scheme == scheme
        assert re.fullmatch(pattern, link.value), link.value
        assert link.agency_id not in by_person[link.person_id]
        by_person[link.person_id][link.agency_id] = link.value
    assert set(by_person) == {p.id for p in persons}
    assert all(set(known) == set(IDENTIFIER_FORMATS) for known in by_person.values())
    for agency in IDENTIFIER_FORMATS:
        values = [known[agency] for known in by_person.values()]
        assert len(set(values)) == PERSONS


def test_same_seed_gives_the_same_data_in_another_database(seeded, make_app, tmp_path):
    app, result = seeded
    other = make_app(
        DATABASE_URL=f"sqlite:///{tmp_path / 'other.db'}", INSTANCE_PATH=str(tmp_path / "other")
    )
    upgrade(get_db(other).engine)
    other_result = _seed(other)

    assert _snapshot(app) == _snapshot(other)
    assert _source_rows(tmp_path / "inst") == _source_rows(tmp_path / "other")
    assert result.citizen_identifiers == other_result.citizen_identifiers
    assert len(_snapshot(app)) == PERSONS


def test_generated_population_depends_only_on_the_seed():
    first = generate_population(SEED, 300)
    assert first == generate_population(SEED, 300)
    other = generate_population(SEED + 1, 300)
    assert {p.identifiers["tax"] for p in first}.isdisjoint({p.identifiers["tax"] for p in other})
    for agency in IDENTIFIER_FORMATS:
        assert len({p.identifiers[agency] for p in first}) == 300
    assert all(first[0].records[category.id] for category in CATEGORIES)
    assert any(not p.records["benefits"] for p in first)
    assert any(not p.records["vehicle"] for p in first)
    with pytest.raises(DemoSeedError):
        generate_population(SEED, 0)


def test_seeding_twice_adds_nothing_and_keeps_files(seeded, tmp_path):
    app, first = seeded
    instance = tmp_path / "inst"
    files = sorted([*instance.glob("clients/*.json"), *instance.glob("sources/*.db")])
    before = {path: path.read_bytes() for path in files}
    counts = _row_counts(app)

    again = _seed(app)

    assert first.persons_created and not again.persons_created
    assert again.seed_matches
    assert _row_counts(app) == counts
    # A case-management client and an officer desk client per agency, one key each.
    assert counts["person"] == PERSONS and counts["client_key"] == 8 and counts["account"] == 3
    assert {path: path.read_bytes() for path in files} == before
    assert len(files) == 12
    assert again.citizen_identifiers == first.citizen_identifiers


def test_reseeding_with_another_seed_keeps_the_existing_seed(seeded):
    app, first = seeded
    counts = _row_counts(app)
    again = _seed(app, seed=SEED + 1)
    assert not again.persons_created and not again.seed_matches
    assert _row_counts(app) == counts
    assert again.citizen_identifiers == first.citizen_identifiers
    assert again.without_benefits is None


def test_source_queries_return_exactly_the_category_fields(seeded, tmp_path):
    app, _ = seeded
    fields = {c.id: c.fields for c in CATEGORIES}
    with _session(app) as session:
        sources = session.scalars(select(Source).order_by(Source.id)).all()
        summary = {s.id: (s.agency_id, sorted(c.id for c in s.categories)) for s in sources}
        linked = defaultdict(set)
        for link in session.scalars(select(IdentityLink)):
            linked[(link.agency_id, link.scheme)].add(link.value)
        configs = {s.id: (s.agency_id, s.adapter, s.timeout_ms, s.config) for s in sources}
    assert summary == {
        "health-db": ("health", ["health.summary"]),
        "social-services-db": ("social-services", ["benefits"]),
        "tax-db": ("tax", ["address", "income"]),
        "vehicle-registry-db": ("vehicle-registry", ["vehicle"]),
    }
    for source_id, (agency, adapter, timeout_ms, config) in configs.items():
        assert (adapter, timeout_ms) == ("sql", 2000)
        assert set(config) == {"url", "identifier_scheme", "queries"}
        assert config["identifier_scheme"] == IDENTIFIER_FORMATS[agency][0]
        assert sorted(config["queries"]) == summary[source_id][1]
        path = Path(config["url"].removeprefix("sqlite:///"))
        assert path.is_absolute() and path == tmp_path / "inst" / "sources" / f"{agency}.db"
        identifiers = linked[(agency, config["identifier_scheme"])]
        engine = create_engine(config["url"])
        with engine.connect() as connection:
            for category, query in config["queries"].items():
                found = 0
                for identifier in identifiers:
                    result = connection.execute(text(query), {"identifier": identifier})
                    assert tuple(result.keys()) == fields[category]
                    found += len(result.fetchall())
                assert found > 0, category
                table, column = SOURCE_TABLES[category]
                stored = connection.execute(
                    text(f"SELECT DISTINCT {column} FROM {table}")  # noqa: S608
                ).scalars()
                assert set(stored) <= identifiers
        engine.dispose()


def test_some_persons_have_no_benefits_and_the_citizen_has_all(seeded, tmp_path):
    _, result = seeded
    citizen = {link.agency_id: link.value for link in result.citizen_identifiers}
    with sqlite3.connect(tmp_path / "inst" / "sources" / "social-services.db") as connection:
        query = "SELECT count(*) FROM benefits WHERE client_no = ?"
        assert connection.execute(query, (citizen["social-services"],)).fetchone()[0] > 0
        assert result.without_benefits is not None
        assert connection.execute(query, (result.without_benefits.value,)).fetchone()[0] == 0
    with sqlite3.connect(tmp_path / "inst" / "sources" / "vehicle-registry.db") as connection:
        query = "SELECT count(*) FROM vehicle WHERE licence = ?"
        assert connection.execute(query, (citizen["vehicle-registry"],)).fetchone()[0] > 0


def test_client_key_files_hold_the_private_half_of_the_registered_key(seeded, tmp_path):
    app, result = seeded
    with _session(app) as session:
        agencies = {a.id: a.name for a in session.scalars(select(Agency))}
        clients = {c.id: c for c in session.scalars(select(Client))}
    assert set(clients) == {f"{agency}-{kind}" for agency in agencies for kind in ("cms", "desk")}
    for agency, name in agencies.items():
        path = tmp_path / "inst" / "clients" / f"{agency}.json"
        assert result.key_files[agency] == path
        assert path.stat().st_mode & 0o777 == 0o600
        document = json.loads(path.read_text())
        assert set(document) == {"client_id", "issuer", "key"}
        assert document["client_id"] == f"{agency}-cms" and document["issuer"] == ISSUER
        private = ECKey.import_key(document["key"])
        assert document["key"]["kid"] == private.thumbprint() and "d" in document["key"]
        assert document["key"]["alg"] == "ES256"

        client = clients[f"{agency}-cms"]
        assert (client.agency_id, client.name) == (agency, f"{name} case management")
        assert client.scope == "lookup cases consent" and len(client.keys) == 1
        registered = client.keys[0]
        assert "d" not in registered.jwk
        assert registered.kid == registered.thumbprint == private.thumbprint()
        token = jwt.encode({"alg": "ES256", "kid": registered.kid}, {"sub": client.id}, private)
        verified = jwt.decode(token, ECKey.import_key(registered.jwk), algorithms=["ES256"])
        assert verified.claims == {"sub": client.id}


def test_a_new_issuer_rewrites_the_key_file_with_the_same_key(seeded, tmp_path):
    app, _ = seeded
    path = tmp_path / "inst" / "clients" / "tax.json"
    before = json.loads(path.read_text())
    _seed(app, issuer="https://elsewhere.test")
    after = json.loads(path.read_text())
    assert after == {**before, "issuer": "https://elsewhere.test"}
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_lost_key_file_is_replaced_by_a_new_registered_key(seeded, tmp_path):
    app, _ = seeded
    path = tmp_path / "inst" / "clients" / "health.json"
    old_kid = json.loads(path.read_text())["key"]["kid"]
    path.unlink()
    _seed(app)
    new_kid = json.loads(path.read_text())["key"]["kid"]
    with _session(app) as session:
        kids = {key.kid for key in session.get(Client, "health-cms").keys}
    assert new_kid != old_kid and kids == {old_kid, new_kid}


def test_demo_logins_are_hashed_with_argon2id(seeded):
    app, result = seeded
    passwords = {login.username: login.password for login in result.logins}
    hasher = PasswordHasher()
    with _session(app) as session:
        accounts = {a.username: a for a in session.scalars(select(Account))}
        officers = {
            username: session.get(Officer, accounts[username].officer_id)
            for username in ("officer", "auditor")
        }
        citizen = session.get(Person, accounts["citizen"].person_id)
    assert set(accounts) == set(passwords) == {"officer", "auditor", "citizen"}
    for username, account in accounts.items():
        assert account.password_hash.startswith("$argon2id$")
        assert hasher.verify(account.password_hash, passwords[username])
        with pytest.raises(VerifyMismatchError):
            hasher.verify(account.password_hash, "not-the-password")
    assert officers["officer"].agency_id == "social-services"
    assert officers["officer"].display_name == "Claire Martin"
    assert officers["officer"].role_names == ["caseworker"]
    assert officers["auditor"].agency_id == "social-services"
    assert officers["auditor"].role_names == ["auditor"]
    first = generate_population(SEED, PERSONS)[0]
    assert accounts["citizen"].kind == "citizen" and citizen.id == first.id
    assert {link.value for link in result.citizen_identifiers} == set(first.identifiers.values())


def _demo_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBROKER_")}
    env.update(
        CASEBROKER_INSTANCE_PATH=str(tmp_path / "demo"),
        CASEBROKER_DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
        **extra,
    )
    return env


def test_demo_command_runs_twice(tmp_path):
    command = [sys.executable, "-c", "from broker.cli import main; main()"]
    args = ["demo", "--no-serve", "--persons", "20", "--seed", "3"]
    env = _demo_env(tmp_path)
    runs = [
        subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        for _ in range(2)
    ]
    key = tmp_path / "demo" / "clients" / "social-services.json"
    for run in runs:
        assert run.returncode == 0, run.stderr
        for expected in (
            "http://127.0.0.1:5000/.well-known/openid-configuration",
            "http://127.0.0.1:5000/jwks.json",
            "http://127.0.0.1:5000/readyz",
            f"casebroker token --client-key {key}",
            "officer-demo-2026",
            "DEMO-ONLY",
            "person TIN-",
        ):
            assert expected in run.stdout
    assert "Seeded 20 synthetic persons" in runs[0].stdout
    assert "already holds the demo seed (20 persons)" in runs[1].stdout
    assert json.loads(key.read_text())["issuer"] == "http://127.0.0.1:5000"
    assert "http://127.0.0.1:5000/portal/" in runs[0].stdout
    engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT record FROM audit_event WHERE kind = 'lookup.decision'")
        )
        lookups = [json.loads(record) for (record,) in rows]
    engine.dispose()
    # The first run's lookups (and only the first's) give the portal and console content.
    assert {r["decision"] for r in lookups} == {"permit", "deny"}
    assert len([r for r in lookups if r.get("break_glass") and r.get("review")]) == 1
    assert any(r.get("officer") for r in lookups)


def test_demo_issuer_follows_the_port_unless_configured(tmp_path):
    runner = CliRunner()
    args = ["demo", "--no-serve", "--persons", "5"]
    env = {**_demo_env(tmp_path), "CASEBROKER_ISSUER": None}
    key = tmp_path / "demo" / "clients" / "tax.json"

    first = runner.invoke(cli, [*args, "--port", "5055"], env=env)
    assert first.exit_code == 0, first.output
    kid = json.loads(key.read_text())["key"]["kid"]
    assert json.loads(key.read_text())["issuer"] == "http://127.0.0.1:5055"

    second = runner.invoke(cli, [*args, "--port", "5056"], env=env)
    assert second.exit_code == 0, second.output
    assert "http://127.0.0.1:5056/jwks.json" in second.output
    assert json.loads(key.read_text())["issuer"] == "http://127.0.0.1:5056"
    assert json.loads(key.read_text())["key"]["kid"] == kid


def test_demo_refuses_a_production_instance(tmp_path):
    env = _demo_env(
        tmp_path,
        CASEBROKER_ENV="production",
        CASEBROKER_KEY_ENCRYPTION_KEY=TEST_KEK,
        CASEBROKER_SECRET_KEY="production-secret",
        CASEBROKER_ISSUER="https://broker.example",
    )
    result = CliRunner().invoke(cli, ["demo", "--no-serve", "--persons", "5"], env=env)
    assert result.exit_code == 1
    assert "refuses to run with CASEBROKER_ENV=production" in result.output
    assert not (tmp_path / "demo.db").exists()
    assert not (tmp_path / "demo" / "clients").exists()
