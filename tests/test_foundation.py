"""Configuration, health probes, error format and the migrations' schema."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from broker import ConfigError, create_app
from broker.config import SETTINGS, load_config
from broker.db import make_engine
from broker.migrate import head_revision
from broker.schema import metadata

ROOT = Path(__file__).resolve().parent.parent


def test_migrations_produce_exactly_the_models_schema(database_url):
    engine = make_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
    engine.dispose()


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["migrations"] == "current"
    assert ready.json["revision"] == head_revision()


def test_readyz_reports_pending_migrations(make_app, tmp_path):
    app = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["migrations"] == "pending"


def test_readyz_reports_policies_that_do_not_load(make_app, tmp_path):
    (tmp_path / "broken.cedar").write_text("permit(principal, action, resource")
    response = make_app(POLICY_DIR=str(tmp_path)).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["policies"] == "not loaded"


def test_readyz_names_the_policy_version(client, app):
    assert client.get("/readyz").json["policies"] == app.extensions["casebroker.policy"].version


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_unknown_route_is_problem_json(client):
    response = client.get("/no/such/thing")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert body["correlation_id"] == response.headers["X-Correlation-Id"]


def test_method_not_allowed_is_problem_json(client):
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_identity_link_unique_per_agency_scheme_value(db_session):
    db_session.execute(
        text(
            "INSERT INTO agency (id, name, sector, status, created_at) "
            "VALUES ('tax', 'Tax', 'revenue', 'active', CURRENT_TIMESTAMP)"
        )
    )
    for pid in ("00000000000000000000000000000001", "00000000000000000000000000000002"):
        db_session.execute(
            text(
                "INSERT INTO person (id, given_name, family_name, created_at) "
                "VALUES (:id, 'A', 'B', CURRENT_TIMESTAMP)"
            ),
            {
                "id": pid
                if "sqlite" in str(db_session.bind.url)
                else f"{pid[:8]}-{pid[8:12]}-{pid[12:16]}-{pid[16:20]}-{pid[20:]}"
            },
        )
    db_session.commit()
    insert = text(
        "INSERT INTO identity_link (person_id, agency_id, scheme, value, created_at) "
        "SELECT id, 'tax', 'tin', 'T-1', CURRENT_TIMESTAMP FROM person "
        "ORDER BY id LIMIT 1 OFFSET :n"
    )
    db_session.execute(insert, {"n": 0})
    db_session.commit()
    with pytest.raises(IntegrityError):
        db_session.execute(insert, {"n": 1})
        db_session.commit()
    db_session.rollback()


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (
            "INSERT INTO agency (id, name, sector, status, created_at) "
            "VALUES ('x', 'X', 's', 'bogus', CURRENT_TIMESTAMP)",
            "agency status",
        ),
        (
            "INSERT INTO identity_link (person_id, agency_id, scheme, value, created_at) VALUES "
            "('00000000-0000-0000-0000-00000000dead', 'nope', 's', 'v', CURRENT_TIMESTAMP)",
            "foreign keys",
        ),
        (
            "INSERT INTO data_category (id, name, description, sensitivity, fields) "
            "VALUES ('c', 'C', '', 'extreme', '[]')",
            "sensitivity",
        ),
        ("UPDATE audit_sequence SET id = 2", "single sequence row"),
    ],
)
def test_database_enforces_constraints(db_session, statement, why):
    with pytest.raises(IntegrityError):
        db_session.execute(text(statement))
        db_session.flush()
    db_session.rollback()


def test_every_setting_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.env}`" in doc, setting.env


def test_production_requires_a_key_encryption_key(tmp_path):
    env = {
        "CASEBROKER_ENV": "production",
        "CASEBROKER_SECRET_KEY": "s",
        "CASEBROKER_ISSUER": "https://broker.example",
        "CASEBROKER_INSTANCE_PATH": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="CASEBROKER_KEY_ENCRYPTION_KEY is required"):
        load_config(env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CASEBROKER_DATABASE_URL": "not a url"}, "not a valid database URL"),
        ({"CASEBROKER_DATABASE_URL": "mysql://x/y"}, "unsupported database"),
        ({"CASEBROKER_KEY_ENCRYPTION_KEY": "c2hvcnQ"}, "must decode to 32 bytes"),
        ({"CASEBROKER_ACCESS_TOKEN_TTL": "soon"}, "CASEBROKER_ACCESS_TOKEN_TTL"),
        ({"CASEBROKER_ENV": "staging"}, "CASEBROKER_ENV"),
        ({"CASEBROKER_ISSUER": "ftp://x"}, "CASEBROKER_ISSUER"),
    ],
)
def test_invalid_configuration_is_refused(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        create_app(environ={"CASEBROKER_INSTANCE_PATH": str(tmp_path), **env})


def test_cli_reports_bad_configuration_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "from broker.cli import main; main()", "db", "current"],
        env={
            "CASEBROKER_DATABASE_URL": "bogus://",
            "CASEBROKER_INSTANCE_PATH": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(r"configuration error: .*DATABASE_URL", lines[0])


def test_development_secrets_persist_in_the_instance_folder(tmp_path):
    first = load_config({"CASEBROKER_INSTANCE_PATH": str(tmp_path)})
    second = load_config({"CASEBROKER_INSTANCE_PATH": str(tmp_path)})
    assert first["KEY_ENCRYPTION_KEY"] == second["KEY_ENCRYPTION_KEY"]
    assert (tmp_path / "key-encryption-key").stat().st_mode & 0o077 == 0
