"""Calling sources: one adapter instance per source per process, called in parallel.

Adapter instances hold connection pools, so they are kept per process and rebuilt when the
source's configuration changes; they are derived from the database row, never authoritative.
Each call has its own deadline; the slowest source costs at most its timeout.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from adapters import Adapter, Record, SourceUnavailable, build_adapter

_POOL_SIZE = 32


@dataclass(frozen=True)
class SourceSpec:
    """What is needed to build and call a source's adapter; a snapshot of the row."""

    id: str
    adapter: str
    config: Mapping[str, Any]
    categories: Mapping[str, tuple[str, ...]]
    timeout: float

    @property
    def fingerprint(self) -> str:
        return json.dumps([self.adapter, self.config, self.categories], sort_keys=True)


@dataclass(frozen=True)
class FetchOutcome:
    records: list[Record] | None
    error: str | None = None


class SourceCaller:
    """The per-process adapters and the thread pool that calls them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._adapters: dict[str, tuple[str, Adapter]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def _executor(self) -> ThreadPoolExecutor:
        # Made on first use so that each forked server worker gets its own threads.
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="source")
            return self._pool

    def adapter(self, spec: SourceSpec) -> Adapter:
        # Built under the lock: two threads racing to build would each close the other's.
        # Building only checks configuration and makes a pool; it does not connect.
        with self._lock:
            cached = self._adapters.get(spec.id)
            if cached and cached[0] == spec.fingerprint:
                return cached[1]
            adapter = build_adapter(spec.adapter, spec.id, spec.config, spec.categories)
            self._adapters[spec.id] = (spec.fingerprint, adapter)
        if cached:
            cached[1].close()
        return adapter

    def fetch_all(self, calls: Sequence[tuple[SourceSpec, str, str]]) -> list[FetchOutcome]:
        """Fetch (source, category, identifier) calls in parallel, each within its timeout."""
        if len(calls) == 1 and self._keeps_deadline(calls[0][0]):
            # A lone call to an adapter that stops at its own deadline needs no pool thread:
            # the request's thread waits no longer than it would on the future.
            return [_outcome(functools.partial(self._fetch_one, *calls[0]))]
        started = time.monotonic()
        futures: list[Future[list[Record]]] = []
        for spec, category, identifier in calls:
            futures.append(self._executor().submit(self._fetch_one, spec, category, identifier))
        outcomes = []
        for (spec, _category, _identifier), future in zip(calls, futures, strict=True):
            remaining = max(0.0, started + spec.timeout - time.monotonic())
            outcomes.append(_outcome(functools.partial(future.result, remaining)))
            future.cancel()  # a no-op unless it timed out before it started
        return outcomes

    def _keeps_deadline(self, spec: SourceSpec) -> bool:
        """Whether the adapter says its ``fetch`` returns by the timeout on its own (the
        contract kit's hung-source checks hold it to that); an adapter that cannot even be
        built fails in ``_fetch_one``, where it costs its source only."""
        try:
            return getattr(self.adapter(spec), "keeps_deadline", False) is True
        except Exception:
            return False

    def _fetch_one(self, spec: SourceSpec, category: str, identifier: str) -> list[Record]:
        return self.adapter(spec).fetch(category, identifier, spec.timeout)

    def close(self) -> None:
        with self._lock:
            adapters = list(self._adapters.values())
            self._adapters.clear()
            pool, self._pool = self._pool, None
        for _fingerprint, adapter in adapters:
            adapter.close()
        if pool:
            pool.shutdown(wait=False, cancel_futures=True)


def _outcome(fetch: Callable[[], list[Record]]) -> FetchOutcome:
    """One call's records, or why there are none."""
    try:
        return FetchOutcome(fetch())
    except FutureTimeout:
        return FetchOutcome(None, "timed out")
    except SourceUnavailable as exc:
        return FetchOutcome(None, str(exc) or "unavailable")
    except Exception as exc:  # an adapter bug must cost one source, not the lookup
        return FetchOutcome(None, f"adapter error: {type(exc).__name__}")
