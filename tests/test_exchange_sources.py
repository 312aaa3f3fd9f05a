"""Calling sources: the request's thread for a lone source that keeps its own deadline, the
pool (and the broker's own deadline) for everything else."""

from __future__ import annotations

import threading
import time

from adapters import SourceUnavailable
from broker.exchange.sources import SourceCaller, SourceSpec


class FakeAdapter:
    """Records which thread called it; sleeps ``delay`` seconds, ignoring any timeout."""

    def __init__(self, delay: float = 0.0, keeps_deadline: bool = False) -> None:
        self.delay = delay
        self.keeps_deadline = keeps_deadline
        self.threads: list[str] = []
        self.started = threading.Event()

    def fetch(self, category: str, identifier: str, timeout: float) -> list[dict]:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        time.sleep(self.delay)
        if identifier == "down":
            raise SourceUnavailable("connection refused")
        if identifier == "bug":
            raise KeyError("oops")
        return [{"identifier": identifier}]

    def close(self) -> None:
        pass


def spec(source_id: str, timeout: float = 1.0) -> SourceSpec:
    return SourceSpec(source_id, "fake", {}, {"income": ("identifier",)}, timeout)


def caller_with(**adapters: FakeAdapter) -> SourceCaller:
    caller = SourceCaller()
    for source_id, adapter in adapters.items():
        caller._adapters[source_id] = (spec(source_id).fingerprint, adapter)
    return caller


def test_a_lone_source_that_keeps_its_deadline_runs_in_the_request_thread():
    adapter = FakeAdapter(keeps_deadline=True)
    caller = caller_with(a=adapter)
    [outcome] = caller.fetch_all([(spec("a"), "income", "p1")])
    assert outcome.records == [{"identifier": "p1"}] and outcome.error is None
    assert adapter.threads == [threading.current_thread().name]
    caller.close()


def test_a_lone_source_that_does_not_say_so_runs_on_the_pool_and_is_cut_at_its_timeout():
    adapter = FakeAdapter(delay=2.0)
    caller = caller_with(a=adapter)
    started = time.monotonic()
    [outcome] = caller.fetch_all([(spec("a", timeout=0.2), "income", "p1")])
    assert time.monotonic() - started < 1.0
    assert outcome.records is None and outcome.error == "timed out"
    assert adapter.started.wait(60) and adapter.threads[0].startswith("source")
    caller.close()


def test_several_sources_run_on_the_pool_even_when_they_keep_their_deadlines():
    first, second = FakeAdapter(keeps_deadline=True), FakeAdapter(keeps_deadline=True)
    caller = caller_with(a=first, b=second)
    outcomes = caller.fetch_all([(spec("a"), "income", "p1"), (spec("b"), "income", "p2")])
    assert [o.records for o in outcomes] == [[{"identifier": "p1"}], [{"identifier": "p2"}]]
    assert all(name.startswith("source") for name in first.threads + second.threads)
    caller.close()


def test_a_lone_source_fails_alone_in_the_request_thread_too():
    caller = caller_with(a=FakeAdapter(keeps_deadline=True))
    [down] = caller.fetch_all([(spec("a"), "income", "down")])
    [bug] = caller.fetch_all([(spec("a"), "income", "bug")])
    assert down.records is None and down.error == "connection refused"
    assert bug.records is None and bug.error == "adapter error: KeyError"
    caller.close()


def test_an_adapter_that_cannot_be_built_costs_its_source_only():
    caller = SourceCaller()
    broken = SourceSpec("a", "no-such-adapter", {}, {"income": ("identifier",)}, 1.0)
    [outcome] = caller.fetch_all([(broken, "income", "p1")])
    assert outcome.records is None and outcome.error.startswith("adapter error")
    caller.close()
