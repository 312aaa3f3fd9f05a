"""The one contract every source adapter meets, and the neutral record type they all exchange."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

JSONValue: TypeAlias = str | int | float | bool | list["JSONValue"] | dict[str, "JSONValue"] | None

#: One record: field name -> JSON-serialisable value; adapters never pass their own types along.
Record: TypeAlias = Mapping[str, JSONValue]

#: Keys of a source's configuration that the broker reads and every adapter must accept.
BROKER_CONFIG_KEYS = frozenset({"identifier_scheme"})


class SourceUnavailable(Exception):
    """The source could not answer; ``str(exc)`` is a short reason, safe to show to operators."""


class AdapterConfigError(ValueError):
    """A source's configuration does not fit its adapter; raised at construction, never later."""


@dataclass(frozen=True)
class Health:
    """Whether a source answers now, with a short reason an operator can act on."""

    ok: bool
    detail: str = ""


@runtime_checkable
class Adapter(Protocol):
    """What the broker calls on a source; one instance per source, shared by many threads."""

    def __init__(
        self, source_id: str, config: Mapping[str, Any], categories: Mapping[str, Sequence[str]]
    ) -> None:
        """Check ``config`` eagerly: a source that cannot work must stop start-up, not a lookup."""

    def fetch(self, category: str, identifier: str, timeout: float) -> list[Record]:
        """Records the source holds on the person it knows as ``identifier``; [] when none.

        An adapter whose ``fetch`` always returns or raises by ``timeout`` on its own may say so
        with a class attribute ``keeps_deadline = True`` (optional, so not part of this
        protocol's checked members): the broker then calls a lookup's lone source in the
        request's thread instead of handing it to a pool thread and waiting there."""

    def health(self, timeout: float) -> Health:
        """Whether the source answers now; never raises for a failing source."""

    def close(self) -> None:
        """Release connections and threads; idempotent."""
