"""The casebroker contract kit run against the CSV adapter, found the way the broker finds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebroker_adapter_csv import CsvAdapter

from adapters import AdapterConfigError, build_adapter, load_adapter_class
from adapters.testing import AdapterContract, check_records

CATEGORIES = {"vehicle": ("plate", "make", "model", "registered_on")}
VEHICLES = """\
pin,plate,make,model,registered_on,internal_note
19850412-1234,ABC-123,Volvo,V70,2019-03-01,checked
19850412-1234,XYZ-987,Saab,900,,
19720101-5678,KLM-456,Skoda,Octavia,2021-11-30,
"""


@pytest.fixture
def vehicles_csv(tmp_path: Path) -> Path:
    path = tmp_path / "vehicles.csv"
    path.write_text(VEHICLES, encoding="utf-8")
    return path


@pytest.fixture
def categories() -> dict[str, tuple[str, ...]]:
    return CATEGORIES


@pytest.fixture
def known_identifiers() -> dict[str, str]:
    return {"vehicle": "19850412-1234"}


@pytest.fixture
def unknown_identifier() -> str:
    return "19990101-0000"


@pytest.fixture
def adapter(vehicles_csv: Path):
    adapter = build_adapter(
        "csv",
        "vehicle-registry",
        {"identifier_column": "pin", "files": {"vehicle": str(vehicles_csv)}},
        CATEGORIES,
    )
    yield adapter
    adapter.close()


class TestCsvAdapterContract(AdapterContract):
    """Every check of the kit, unchanged."""


def test_the_entry_point_names_this_class():
    assert load_adapter_class("csv") is CsvAdapter


def test_records_hold_fields_only_and_empty_cells_are_null(adapter):
    records = adapter.fetch("vehicle", "19850412-1234", 1.0)
    check_records(records, CATEGORIES["vehicle"])
    assert records == [
        {"plate": "ABC-123", "make": "Volvo", "model": "V70", "registered_on": "2019-03-01"},
        {"plate": "XYZ-987", "make": "Saab", "model": "900", "registered_on": None},
    ]


def test_a_file_without_the_identifier_column_stops_start_up(vehicles_csv):
    with pytest.raises(AdapterConfigError, match="no column 'tin'"):
        CsvAdapter(
            "vehicle-registry",
            {"identifier_column": "tin", "files": {"vehicle": str(vehicles_csv)}},
            CATEGORIES,
        )


def test_a_missing_file_stops_start_up(tmp_path):
    with pytest.raises(AdapterConfigError, match="cannot read the file for 'vehicle'"):
        CsvAdapter(
            "vehicle-registry",
            {"identifier_column": "pin", "files": {"vehicle": str(tmp_path / "none.csv")}},
            CATEGORIES,
        )


def test_health_notices_a_removed_file(adapter, vehicles_csv):
    assert adapter.health(1.0).ok
    vehicles_csv.unlink()
    health = adapter.health(1.0)
    assert not health.ok and "vehicle" in health.detail
