"""Purpose caps: whether a purpose demands a justification and whether it allows break-glass.

The registry itself is the ``purpose`` table; the caller passes the row, and this module only
applies its caps to a request, before any policy is asked, so that a refused request says which
cap it broke.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_JUSTIFICATION_LENGTH = 2000


class PurposeCaps(Protocol):
    """What a registered purpose says about its own use (``broker.models.Purpose`` fits)."""

    id: str
    break_glass_allowed: bool
    justification_required: bool


class PurposeCapError(ValueError):
    """A request broke a cap of its purpose; the message is fit for the requester."""


@dataclass(frozen=True)
class PurposeCheck:
    """A request that respects its purpose's caps, with the facts the policy engine needs."""

    #: The justification, trimmed; ``None`` when none was given.
    justification: str | None
    #: Break-glass was asked for, the purpose allows it and a justification was given.
    break_glass: bool


def check_purpose_request(
    purpose: PurposeCaps, justification: str | None, break_glass_requested: bool
) -> PurposeCheck:
    """Apply a purpose's caps to a request; raise ``PurposeCapError`` when one is broken."""
    text = (justification or "").strip() or None
    if text is not None and len(text) > MAX_JUSTIFICATION_LENGTH:
        raise PurposeCapError(
            f"the justification is longer than {MAX_JUSTIFICATION_LENGTH} characters"
        )
    if break_glass_requested and not purpose.break_glass_allowed:
        raise PurposeCapError(f"break-glass is not permitted for purpose {purpose.id}")
    if text is None and (purpose.justification_required or break_glass_requested):
        raise PurposeCapError(f"purpose {purpose.id} requires a justification")
    return PurposeCheck(justification=text, break_glass=break_glass_requested)
