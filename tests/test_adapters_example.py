"""The third-party example package, end to end: installed on its own, found through its entry
point, passing the contract kit here and its own test suite as shipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import casebroker_adapter_csv
import pytest

from adapters import load_adapter_class
from adapters.testing import AdapterContract

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "casebroker-adapter-csv"
CATEGORIES = {
    "vehicle": ("plate", "make", "model"),
    "licence": ("class", "valid_until"),
}


@pytest.fixture
def categories() -> dict[str, tuple[str, ...]]:
    return CATEGORIES


@pytest.fixture
def known_identifiers() -> dict[str, str]:
    return {"vehicle": "19850412-1234", "licence": "19720101-5678"}


@pytest.fixture
def unknown_identifier() -> str:
    return "19990101-0000"


@pytest.fixture
def adapter(tmp_path: Path):
    (tmp_path / "vehicles.csv").write_text(
        "pin,plate,make,model\n19850412-1234,ABC-123,Volvo,V70\n", encoding="utf-8"
    )
    (tmp_path / "licences.csv").write_text(
        "pin,class,valid_until,points\n19720101-5678,B,2031-01-01,3\n", encoding="utf-8"
    )
    config = {
        "identifier_column": "pin",
        "identifier_scheme": "pin",
        "files": {
            "vehicle": str(tmp_path / "vehicles.csv"),
            "licence": str(tmp_path / "licences.csv"),
        },
    }
    adapter = load_adapter_class("csv")("transport-registry", config, CATEGORIES)
    yield adapter
    adapter.close()


class TestExampleAdapterContract(AdapterContract):
    """The kit against the example, loaded by name as the broker loads it."""


def test_the_csv_entry_point_is_the_example_package():
    cls = load_adapter_class("csv")
    assert cls is casebroker_adapter_csv.CsvAdapter
    assert Path(casebroker_adapter_csv.__file__).resolve().is_relative_to(EXAMPLE)


def test_the_example_passes_its_own_test_suite():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
