"""Turning decision requests into Cedar requests and entities, with no I/O.

The entities are built from the request alone: the requesting and providing ``Agency``, the
``Category`` with its sensitivity, and the ``DataSet`` (``DataSet::"tax/income"``) linking them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.engine import DecisionRequest

ACTION = {"type": "Action", "id": "lookup"}

#: The facts about one request that go into entities: (requester, provider, category, sensitivity).
EntityFacts = tuple[str, str, str, str]


def dataset_id(provider: str, category: str) -> str:
    """The ``DataSet`` uid of a provider's category; a provider id may not contain '/'."""
    if "/" in provider:
        raise ValueError(f"agency id {provider!r} may not contain '/'")
    return f"{provider}/{category}"


@lru_cache(maxsize=64)
def cedar_time(moment: datetime) -> str:
    """Cedar ``datetime`` text in UTC; a naive time is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def cedar_request(request: DecisionRequest, **overrides: bool) -> dict[str, Any]:
    """One Cedar request; ``overrides`` replace boolean context facts (for reason hints)."""
    context = {
        "purpose": request.purpose,
        "consent": request.consent,
        "justification": request.justification,
        "break_glass": request.break_glass,
        "open_case": request.open_case,
        "case_capacities": list(request.case_capacities),
        "officer_assigned": request.officer_assigned,
        "officer_roles": list(request.officer_roles),
        "client": request.client_id,
        "now": {"__extn": {"fn": "datetime", "arg": cedar_time(request.now)}},
    }
    context.update(overrides)
    return {
        "principal": {"type": "Agency", "id": request.requester},
        "action": ACTION,
        "resource": {"type": "DataSet", "id": dataset_id(request.provider, request.category)},
        "context": context,
    }


def entity_facts(requests: Sequence[DecisionRequest]) -> frozenset[EntityFacts]:
    """The distinct entity facts of a batch: the key under which its entities are cached."""
    return frozenset((r.requester, r.provider, r.category, r.sensitivity) for r in requests)


def entities_json(facts: frozenset[EntityFacts]) -> str:
    """The Cedar entities document for a batch's facts."""
    agencies: set[str] = set()
    categories: dict[str, str] = {}
    datasets: dict[str, tuple[str, str]] = {}
    for requester, provider, category, sensitivity in facts:
        agencies.update((requester, provider))
        known = categories.setdefault(category, sensitivity)
        if known != sensitivity:
            raise ValueError(f"category {category!r} given with two sensitivities in one batch")
        datasets[dataset_id(provider, category)] = (provider, category)
    entities: list[dict[str, Any]] = [
        {"uid": {"type": "Agency", "id": agency}, "attrs": {}, "parents": []}
        for agency in sorted(agencies)
    ]
    entities.extend(
        {
            "uid": {"type": "Category", "id": category},
            "attrs": {"sensitivity": sensitivity},
            "parents": [],
        }
        for category, sensitivity in sorted(categories.items())
    )
    entities.extend(
        {
            "uid": {"type": "DataSet", "id": uid},
            "attrs": {
                "provider": {"__entity": {"type": "Agency", "id": provider}},
                "category": {"__entity": {"type": "Category", "id": category}},
            },
            "parents": [],
        }
        for uid, (provider, category) in sorted(datasets.items())
    )
    return json.dumps(entities)
