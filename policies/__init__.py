"""Policy: data-sharing agreements as Cedar policies, the decision point and purpose caps.

``policies.cli.policy_group`` holds the operator commands; it is imported from there so that
using the engine does not pull in the command line.
"""

from __future__ import annotations

from policies.engine import (
    Decision,
    DecisionRequest,
    Obligations,
    PolicyEngine,
    validate_directory,
)
from policies.loader import DEFAULT_POLICY_DIR, PolicyLoadError
from policies.purposes import PurposeCapError, PurposeCheck, check_purpose_request

__all__ = [
    "DEFAULT_POLICY_DIR",
    "Decision",
    "DecisionRequest",
    "Obligations",
    "PolicyEngine",
    "PolicyLoadError",
    "PurposeCapError",
    "PurposeCheck",
    "check_purpose_request",
    "validate_directory",
]
