"""Reading a source's configuration so that every mistake is named precisely at start-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapters.contract import BROKER_CONFIG_KEYS, AdapterConfigError

_MISSING: Any = object()


class ConfigReader:
    """One source's configuration, read key by key; each problem names the source and the key."""

    def __init__(
        self, adapter: str, source_id: str, config: Mapping[str, Any], keys: set[str]
    ) -> None:
        self.prefix = f"source {source_id!r} ({adapter} adapter)"
        if not isinstance(source_id, str) or not source_id:
            raise self.error("the source id must be a non-empty string")
        if not isinstance(config, Mapping):
            raise self.error(f"config must be a mapping, not {type(config).__name__}")
        unknown = sorted(str(key) for key in set(config) - keys - BROKER_CONFIG_KEYS)
        if unknown:
            raise self.error(
                f"unknown config key(s) {', '.join(unknown)}; known: {', '.join(sorted(keys))}"
            )
        self.config = config
        scheme = config.get("identifier_scheme")
        if scheme is not None and (not isinstance(scheme, str) or not scheme):
            raise self.error("identifier_scheme must be a non-empty string")

    def error(self, message: str) -> AdapterConfigError:
        """A config error that says which source and what to fix."""
        return AdapterConfigError(f"{self.prefix}: {message}")

    def string(self, key: str, default: str = _MISSING) -> str:
        """A non-empty string."""
        value = self.config.get(key, default)
        if value is _MISSING:
            raise self.error(f"{key} is required")
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{key} must be a non-empty string")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        """An integer within [low, high]."""
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(f"{key} must be an integer from {low} to {high}, not {value!r}")
        return value

    def per_category(self, key: str, categories: Mapping[str, Sequence[str]]) -> dict[str, str]:
        """A mapping with one non-empty string for each category the source provides."""
        value = self.config.get(key, _MISSING)
        if value is _MISSING:
            raise self.error(f"{key} is required: one entry per category")
        if not isinstance(value, Mapping):
            raise self.error(f"{key} must map each category to a string")
        missing = sorted(set(categories) - set(value))
        if missing:
            raise self.error(f"{key} has no entry for category {', '.join(missing)}")
        extra = sorted(str(c) for c in set(value) - set(categories))
        if extra:
            raise self.error(
                f"{key} names category {', '.join(extra)}, which this source does not provide"
            )
        for category, item in value.items():
            if not isinstance(item, str) or not item.strip():
                raise self.error(f"{key}[{category!r}] must be a non-empty string")
        return dict(value)


def field_sets(
    categories: Mapping[str, Sequence[str]], reader: ConfigReader
) -> dict[str, frozenset[str]]:
    """Each provided category's fields, checked once so fetch can rely on them."""
    if not isinstance(categories, Mapping) or not categories:
        raise reader.error("the source must provide at least one category")
    fields: dict[str, frozenset[str]] = {}
    for category, names in categories.items():
        if not isinstance(category, str) or not category:
            raise reader.error(f"category ids must be non-empty strings, not {category!r}")
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise reader.error(f"the fields of {category!r} must be a list of names")
        if not names or not all(isinstance(name, str) and name for name in names):
            raise reader.error(f"the fields of {category!r} must be non-empty strings")
        fields[category] = frozenset(names)
    return fields


def fields_of(fields: Mapping[str, frozenset[str]], category: str) -> frozenset[str]:
    """The category's fields; asking for one the source does not provide is a caller's bug."""
    try:
        return fields[category]
    except (KeyError, TypeError):
        raise ValueError(f"this source does not provide category {category!r}") from None


def check_identifier(identifier: str) -> None:
    """An empty or non-string identifier is a caller's bug, not a person the source lacks."""
    if not isinstance(identifier, str) or not identifier:
        raise ValueError("identifier must be a non-empty string")
