"""The benchmarks still run: each script, briefly, on the suite's database.

The figures of such short runs mean nothing; what is checked is that every part of a run
(seeding, the servers under gunicorn, the load, the floor endpoint, the profile and its floor)
works end to end and prints its ratios, so a change that breaks a benchmark is found here and
not when someone next measures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
PG_URL = os.environ.get("CASEBROKER_TEST_DATABASE_URL")


def _run(script: str, *args: str) -> str:
    database = ["--db", "postgresql", "--pg-url", PG_URL] if PG_URL else ["--db", "sqlite"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBROKER_")}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *database, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return " ".join(done.stdout.split())


def test_lookup_throughput_with_its_floor() -> None:
    out = _run("lookup.py", "--duration", "1", "--warmup", "0.3", "--persons", "40")
    assert "lookup/bare = " in out and "floor/bare = " in out


def test_lookup_profile_with_its_floor() -> None:
    out = _run("lookup.py", "--profile", "--lookups", "30", "--persons", "40")
    assert "Time per stage" in out and "A lookup costing the bare request" in out


@pytest.mark.parametrize("profile", [False, True], ids=["throughput", "profile"])
def test_token_bench(profile: bool) -> None:
    if profile:
        out = _run("token.py", "--profile", "--grants", "30")
        assert "A grant costing the bare request" in out
    else:
        out = _run("token.py", "--no-peer", "--duration", "1", "--warmup", "0.3")
        assert "token/bare = " in out and "floor/bare = " in out
