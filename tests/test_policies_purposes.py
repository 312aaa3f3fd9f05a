"""Purpose caps: justification and break-glass rules applied before any policy is asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from policies import PurposeCapError, check_purpose_request
from policies.purposes import MAX_JUSTIFICATION_LENGTH

OPEN = SimpleNamespace(
    id="benefit-eligibility", break_glass_allowed=False, justification_required=False
)
JUSTIFIED = SimpleNamespace(
    id="road-safety", break_glass_allowed=False, justification_required=True
)
GLASS = SimpleNamespace(
    id="child-protection", break_glass_allowed=True, justification_required=True
)


def test_open_purpose_needs_nothing() -> None:
    check = check_purpose_request(OPEN, None, False)
    assert check.justification is None
    assert not check.break_glass


def test_justification_is_trimmed() -> None:
    assert check_purpose_request(JUSTIFIED, "  speeding case 42 ", False).justification == (
        "speeding case 42"
    )


@pytest.mark.parametrize("justification", [None, "", "   \n\t"])
def test_missing_or_blank_justification_is_refused(justification: str | None) -> None:
    with pytest.raises(PurposeCapError, match="purpose road-safety requires a justification"):
        check_purpose_request(JUSTIFIED, justification, False)


def test_too_long_justification_is_refused_even_when_optional() -> None:
    check_purpose_request(OPEN, "x" * MAX_JUSTIFICATION_LENGTH, False)
    with pytest.raises(PurposeCapError, match="longer than 2000 characters"):
        check_purpose_request(OPEN, "x" * (MAX_JUSTIFICATION_LENGTH + 1), False)


def test_break_glass_on_a_purpose_without_it_is_refused() -> None:
    with pytest.raises(
        PurposeCapError, match="break-glass is not permitted for purpose road-safety"
    ):
        check_purpose_request(JUSTIFIED, "urgent", True)


def test_break_glass_needs_a_justification() -> None:
    with pytest.raises(PurposeCapError, match="requires a justification"):
        check_purpose_request(GLASS, " ", True)


def test_break_glass_is_effective_when_allowed_and_justified() -> None:
    assert check_purpose_request(GLASS, "child at risk, case 7", True).break_glass
    assert not check_purpose_request(GLASS, "child at risk, case 7", False).break_glass


def test_purpose_cap_error_is_a_value_error() -> None:
    assert issubclass(PurposeCapError, ValueError)
