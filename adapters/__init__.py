"""Source adapters: one contract, found through the ``casebroker.adapters`` entry points."""

from adapters.contract import (
    Adapter,
    AdapterConfigError,
    Health,
    JSONValue,
    Record,
    SourceUnavailable,
)
from adapters.registry import AdapterLoadError, build_adapter, load_adapter_class

__all__ = [
    "Adapter",
    "AdapterConfigError",
    "AdapterLoadError",
    "Health",
    "JSONValue",
    "Record",
    "SourceUnavailable",
    "build_adapter",
    "load_adapter_class",
]
