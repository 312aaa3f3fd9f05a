"""Fixtures: a migrated database per test on SQLite or PostgreSQL, and apps on it.

``CASEBROKER_TEST_DATABASE_URL`` picks PostgreSQL: each xdist worker gets its own database,
made next to the one named, migrated once and emptied after every test. Without it each test
gets a copy of a migrated SQLite file.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.engine import make_url

from broker import create_app
from broker.db import make_engine
from broker.migrate import upgrade
from broker.schema import metadata

TEST_KEK = base64.urlsafe_b64encode(b"k" * 32).decode()
ISSUER = "https://broker.test"
PG_URL = os.environ.get("CASEBROKER_TEST_DATABASE_URL")


def pytest_report_header(config: pytest.Config) -> str:
    return f"casebroker database: {'postgresql' if PG_URL else 'sqlite'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """CI sets CASEBROKER_FAIL_ON_SKIP: a skipped test there counts as a failure."""
    if not os.environ.get("CASEBROKER_FAIL_ON_SKIP"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def _template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    if PG_URL:
        base = make_url(PG_URL)
        name = f"{base.database}_{worker_id}"
        admin = make_engine(base.render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.set(database=name).render_as_string(hide_password=False)
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        yield str(path)


def _empty_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables if t.name != "audit_sequence")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        conn.execute(text("UPDATE audit_sequence SET next_seq = 0"))
    engine.dispose()


@pytest.fixture
def database_url(_template: str, tmp_path: Path) -> Iterator[str]:
    if PG_URL:
        yield _template
        _empty_postgres(_template)
    else:
        path = tmp_path / "casebroker.db"
        shutil.copyfile(_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build app instances on the test's database; several model several nodes."""
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        config = {
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(tmp_path / "instance"),
            "KEY_ENCRYPTION_KEY": TEST_KEK,
            "SECRET_KEY": "test-secret-key-not-for-production",
            "ISSUER": ISSUER,
        }
        config.update(overrides)
        app = create_app(test_config=config, environ={})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["casebroker.db"].dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def db_session(app: Flask):
    """A session on the test's database, outside any request."""
    with app.extensions["casebroker.db"].sessionmaker() as session:
        yield session
