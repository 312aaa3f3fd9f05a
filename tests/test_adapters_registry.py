"""Finding adapters through entry points, and refusing loudly those that do not fit."""

from __future__ import annotations

import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

import adapters
from adapters import AdapterConfigError, AdapterLoadError, build_adapter, load_adapter_class
from adapters.http import HttpAdapter
from adapters.registry import GROUP, check_adapter_class
from adapters.sql import SqlAdapter

DOCS = Path(__file__).resolve().parent.parent / "docs" / "adapters.md"


class Fits:
    def __init__(self, source_id, config, categories):
        self.source_id = source_id

    def fetch(self, category, identifier, timeout, *, trace=None):
        return []

    def health(self, timeout):
        return adapters.Health(True)

    def close(self):
        return None


class MissingFetch:
    def __init__(self, source_id, config, categories):
        pass

    def health(self, timeout):
        return adapters.Health(True)

    def close(self):
        return None


class WrongNames(Fits):
    def fetch(self, category, person, timeout):
        return []

    def health(self, seconds):
        return adapters.Health(True)


class ExtraRequired(Fits):
    def close(self, force):
        return None


class StaticHealth(Fits):
    @staticmethod
    def health(timeout):
        return adapters.Health(True)


class NoInit:
    def fetch(self, category, identifier, timeout):
        return []

    def health(self, timeout):
        return adapters.Health(True)

    def close(self):
        return None


class Explodes(Fits):
    def __init__(self, source_id, config, categories):
        raise RuntimeError("cannot reach the licence server")


class Refuses(Fits):
    def __init__(self, source_id, config, categories):
        raise AdapterConfigError(f"source {source_id!r}: path is required")


def not_a_class(source_id, config, categories):
    return Fits(source_id, config, categories)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch):
    """Replace the installed entry points with the given name -> target pairs."""

    def install(*pairs: tuple[str, str]) -> None:
        points = [EntryPoint(name=name, value=value, group=GROUP) for name, value in pairs]
        monkeypatch.setattr(
            "adapters.registry.entry_points",
            lambda group: [p for p in points if p.group == group],
        )

    return install


def test_the_public_api_is_explicit():
    assert set(adapters.__all__) >= {
        "Adapter",
        "Record",
        "Health",
        "SourceUnavailable",
        "AdapterConfigError",
        "AdapterLoadError",
        "load_adapter_class",
        "build_adapter",
    }
    assert issubclass(AdapterConfigError, ValueError)


def test_the_built_ins_are_found_through_entry_points():
    assert load_adapter_class("sql") is SqlAdapter
    assert load_adapter_class("http") is HttpAdapter


def test_an_unknown_name_is_refused_with_the_installed_names():
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter_class("ldap")
    message = str(raised.value)
    assert "no adapter named 'ldap' in entry-point group 'casebroker.adapters'" in message
    assert "http" in message and "sql" in message


def test_an_import_failure_is_refused_with_its_cause(installed):
    installed(("broken", "casebroker_no_such_module:Adapter"))
    with pytest.raises(AdapterLoadError, match="cannot import casebroker_no_such_module:Adapter"):
        load_adapter_class("broken")


def test_a_class_without_fetch_is_refused_precisely(installed):
    installed(("partial", f"{__name__}:MissingFetch"))
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter_class("partial")
    assert str(raised.value) == (
        f"adapter 'partial' ({__name__}.MissingFetch) does not fit the Adapter contract: "
        "fetch is missing; expected fetch(self, category, identifier, timeout)"
    )


def test_wrong_parameter_names_are_refused_each_named(installed):
    installed(("renamed", f"{__name__}:WrongNames"))
    with pytest.raises(AdapterLoadError) as raised:
        load_adapter_class("renamed")
    message = str(raised.value)
    assert (
        "expected fetch(self, category, identifier, timeout), "
        "found fetch(self, category, person, timeout)"
    ) in message
    assert "expected health(self, timeout), found health(self, seconds)" in message


@pytest.mark.parametrize(
    ("cls", "problem"),
    [
        (ExtraRequired, "expected close(self), found close(self, force)"),
        (StaticHealth, "health must be a plain method"),
        (NoInit, "__init__ is missing; expected __init__(self, source_id, config, categories)"),
        (not_a_class, "is not a class"),
    ],
)
def test_other_misfits_are_refused(cls, problem):
    with pytest.raises(AdapterLoadError) as raised:
        check_adapter_class(cls, "x")
    assert problem in str(raised.value)


def test_optional_extra_parameters_fit():
    check_adapter_class(Fits, "fits")
    assert isinstance(Fits("s", {}, {}), adapters.Adapter)


def test_a_name_registered_twice_is_refused(installed):
    installed(("dup", f"{__name__}:Fits"), ("dup", f"{__name__}:WrongNames"))
    with pytest.raises(AdapterLoadError, match="adapter 'dup' is registered more than once"):
        load_adapter_class("dup")


def test_build_adapter_passes_config_errors_through(installed):
    installed(("refuses", f"{__name__}:Refuses"))
    with pytest.raises(AdapterConfigError, match="'src': path is required"):
        build_adapter("refuses", "src", {}, {"income": ["year"]})


def test_build_adapter_names_the_source_when_an_adapter_fails_to_start(installed):
    installed(("explodes", f"{__name__}:Explodes"))
    with pytest.raises(AdapterLoadError) as raised:
        build_adapter("explodes", "src", {}, {"income": ["year"]})
    assert str(raised.value) == (
        "source 'src': adapter 'explodes' failed to start: "
        "RuntimeError: cannot reach the licence server"
    )


def test_build_adapter_refuses_a_field_list_given_as_a_string(installed):
    installed(("fits", f"{__name__}:Fits"))
    with pytest.raises(AdapterConfigError, match="fields of category 'income' must be a list"):
        build_adapter("fits", "src", {}, {"income": "year"})
    adapter = build_adapter("fits", "src", {}, {"income": ["year"]})
    assert isinstance(adapter, Fits) and adapter.source_id == "src"


def _documented_configs() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    return [json.loads(block) for block in blocks]


def test_the_configurations_in_the_docs_are_accepted(monkeypatch):
    monkeypatch.setenv("BENEFITS_API_CLIENT_SECRET", "documented")
    built = []
    for config in _documented_configs():
        if "queries" in config:
            categories = {category: ["year"] for category in config["queries"]}
            built.append(build_adapter("sql", "documented", config, categories))
        elif "paths" in config:
            categories = {category: ["year"] for category in config["paths"]}
            built.append(build_adapter("http", "documented", config, categories))
    assert [type(adapter) for adapter in built] == [SqlAdapter, SqlAdapter, HttpAdapter]
    for adapter in built:
        adapter.close()
