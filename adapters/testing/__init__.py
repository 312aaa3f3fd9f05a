"""The adapter contract kit: an adapter package subclasses these classes in its own tests.

``AdapterContract`` holds the checks every adapter must pass; ``HangingSourceContract`` and
``UnavailableSourceContract`` add the checks for a source that hangs and one that is down or
answers garbage, for adapters whose tests can stage those. Name the subclass ``Test...``; the
kit's own classes do not start with ``Test``, so pytest collects their checks only through it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from adapters.contract import Adapter, Health, SourceUnavailable
from adapters.registry import check_adapter_class

__all__ = [
    "AWKWARD_IDENTIFIERS",
    "AdapterContract",
    "HangingSourceContract",
    "UnavailableSourceContract",
    "check_adapter_class",
    "check_records",
]

#: Identifiers no source knows: each must come back as [] and never break a query or a URL.
AWKWARD_IDENTIFIERS = (
    "x' OR '1'='1",
    "'; DROP TABLE person; --",
    '" OR ""="',
    "a/b",
    "../../etc/passwd",
    "..",
    ".",
    "%2F",
    "%",
    "*",
    "?q=1#fragment",
    "{identifier}",
    "back\\slash",
    " padded ",
    "line\nbreak",
    "é 漢字 😀",
)

_SCALARS = (str, int, float, bool, type(None))


def _check_json(value: Any, where: str) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), f"{where} is {value}, which JSON cannot carry"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where} has a key {key!r} that is not a string"
            _check_json(item, f"{where}[{key!r}]")
    else:
        assert isinstance(value, _SCALARS), f"{where} is a {type(value).__name__}, not JSON"


def check_records(records: Any, fields: Iterable[str]) -> None:
    """Assert ``records`` is a list of neutral records holding only the declared fields."""
    allowed = set(fields)
    assert isinstance(records, list), f"fetch returned a {type(records).__name__}, not a list"
    for index, record in enumerate(records):
        assert isinstance(record, Mapping), f"record {index} is a {type(record).__name__}"
        extra = sorted(str(key) for key in set(record) - allowed)
        assert not extra, f"record {index} holds undeclared field(s) {extra}"
        for key, value in record.items():
            _check_json(value, f"record {index} field {key!r}")
        json.dumps(dict(record), allow_nan=False)


def _canonical(records: list[Any]) -> list[str]:
    return sorted(json.dumps(dict(record), sort_keys=True) for record in records)


class AdapterContract:
    """Every adapter's checks. Fixtures to provide: ``adapter`` (an instance, closed by the
    fixture), ``categories`` (what it was built with), ``known_identifiers`` (category ->
    an identifier the source holds records for) and ``unknown_identifier``."""

    #: Seconds given to calls that should succeed.
    timeout: float = 5.0
    #: Seconds allowed beyond a timeout: a correctness check, not a benchmark.
    slack: float = 1.0

    def test_class_fits_the_contract(self, adapter: Adapter) -> None:
        check_adapter_class(type(adapter))
        assert isinstance(adapter, Adapter)

    def test_known_identifiers_give_records_of_declared_fields(
        self,
        adapter: Adapter,
        categories: Mapping[str, Sequence[str]],
        known_identifiers: Mapping[str, str],
    ) -> None:
        assert known_identifiers, "known_identifiers must name at least one category"
        for category, identifier in known_identifiers.items():
            assert category in categories, f"{category!r} is not among the adapter's categories"
            records = adapter.fetch(category, identifier, self.timeout)
            assert records, f"no records for the known identifier of {category!r}"
            check_records(records, categories[category])

    def test_unknown_identifier_gives_an_empty_list(
        self,
        adapter: Adapter,
        categories: Mapping[str, Sequence[str]],
        unknown_identifier: str,
    ) -> None:
        for category in categories:
            assert adapter.fetch(category, unknown_identifier, self.timeout) == []

    @pytest.mark.parametrize("identifier", AWKWARD_IDENTIFIERS)
    def test_awkward_identifiers_are_data_never_syntax(
        self, adapter: Adapter, categories: Mapping[str, Sequence[str]], identifier: str
    ) -> None:
        for category in categories:
            records = adapter.fetch(category, identifier, self.timeout)
            assert records == [], f"{identifier!r} found records in {category!r}: {records}"

    def test_unknown_category_is_a_value_error(
        self, adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        identifier = next(iter(known_identifiers.values()))
        with pytest.raises(ValueError, match="category") as raised:
            adapter.fetch("no-such-category", identifier, self.timeout)
        assert not isinstance(raised.value, SourceUnavailable)

    def test_empty_identifier_is_a_value_error(
        self, adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        category = next(iter(known_identifiers))
        with pytest.raises(ValueError, match="identifier"):
            adapter.fetch(category, "", self.timeout)

    def test_health_reports_ok(self, adapter: Adapter) -> None:
        health = adapter.health(self.timeout)
        assert isinstance(health, Health)
        assert health.ok, f"health is not ok: {health.detail}"

    def test_tiny_timeout_answers_or_gives_up_in_time(
        self, adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        for category, identifier in known_identifiers.items():
            started = time.monotonic()
            try:
                records = adapter.fetch(category, identifier, 0.001)
            except SourceUnavailable as exc:
                assert str(exc), "SourceUnavailable without a reason"
                records = []
            assert time.monotonic() - started < 0.001 + self.slack
            assert isinstance(records, list)

    def test_concurrent_fetches_agree_with_sequential_ones(
        self,
        adapter: Adapter,
        known_identifiers: Mapping[str, str],
        unknown_identifier: str,
    ) -> None:
        calls = [*known_identifiers.items()]
        calls += [(category, unknown_identifier) for category in known_identifiers]
        expected = {call: _canonical(adapter.fetch(*call, self.timeout)) for call in calls}
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda call: adapter.fetch(*call, self.timeout), calls * 8))
        for call, records in zip(calls * 8, results, strict=True):
            assert _canonical(records) == expected[call], f"concurrent fetch {call} differs"

    def test_close_is_idempotent_and_final(
        self, adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        adapter.close()
        adapter.close()
        category, identifier = next(iter(known_identifiers.items()))
        with pytest.raises(SourceUnavailable):
            adapter.fetch(category, identifier, self.timeout)


class HangingSourceContract:
    """A source that never answers costs at most its timeout. Fixtures: ``hanging_adapter``
    (whose source hangs, closed by the fixture) and ``known_identifiers``."""

    #: The timeout given to the hung source.
    hang_timeout: float = 0.3
    slack: float = 1.0

    def _fetch_hung(self, adapter: Adapter, category: str, identifier: str) -> float:
        started = time.monotonic()
        with pytest.raises(SourceUnavailable) as raised:
            adapter.fetch(category, identifier, self.hang_timeout)
        assert str(raised.value), "SourceUnavailable without a reason"
        return time.monotonic() - started

    def test_hung_fetch_costs_at_most_its_timeout(
        self, hanging_adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        category, identifier = next(iter(known_identifiers.items()))
        elapsed = self._fetch_hung(hanging_adapter, category, identifier)
        assert elapsed <= self.hang_timeout + self.slack, f"a hung fetch took {elapsed:.2f} s"

    def test_concurrent_hung_fetches_each_cost_at_most_the_timeout(
        self, hanging_adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        category, identifier = next(iter(known_identifiers.items()))
        with ThreadPoolExecutor(max_workers=4) as pool:
            times = list(
                pool.map(lambda _: self._fetch_hung(hanging_adapter, category, identifier), [0] * 4)
            )
        assert max(times) <= self.hang_timeout + self.slack, f"hung fetches took {times}"

    def test_hung_health_is_not_ok_in_time(self, hanging_adapter: Adapter) -> None:
        started = time.monotonic()
        health = hanging_adapter.health(self.hang_timeout)
        elapsed = time.monotonic() - started
        assert isinstance(health, Health)
        assert not health.ok and health.detail, f"a hung source reported {health}"
        assert elapsed <= self.hang_timeout + self.slack, f"a hung health took {elapsed:.2f} s"


class UnavailableSourceContract:
    """A source that is down or answers garbage is unavailable, with a reason. Fixtures:
    ``unavailable_adapter`` (closed by the fixture) and ``known_identifiers``."""

    timeout: float = 5.0

    def test_unavailable_source_raises_source_unavailable(
        self, unavailable_adapter: Adapter, known_identifiers: Mapping[str, str]
    ) -> None:
        for category, identifier in known_identifiers.items():
            with pytest.raises(SourceUnavailable) as raised:
                unavailable_adapter.fetch(category, identifier, self.timeout)
            assert str(raised.value), "SourceUnavailable without a reason"

    def test_unavailable_source_health_is_not_ok(self, unavailable_adapter: Adapter) -> None:
        health = unavailable_adapter.health(self.timeout)
        assert isinstance(health, Health)
        assert not health.ok and health.detail, f"an unavailable source reported {health}"
