"""The complete schema: importing this module registers every package's models on Base."""

import identity.oidc_models  # noqa: F401 (registers the provider's tables)
from audit.console.models import AuditFinding
from audit.models import AuditEvent, AuditSequence
from broker.cases.models import Case, CaseAssignee, CaseCapacity, CasePurpose
from broker.db import Base
from broker.models import Agency, DataCategory, Purpose, Source, SourceCategory
from consent.models import Consent, ConsentEvent
from identity.models import (
    Account,
    Client,
    ClientKey,
    IdentityLink,
    Officer,
    OfficerRole,
    Person,
    ReplayGuard,
    SigningKey,
)

metadata = Base.metadata

__all__ = [
    "Account",
    "Agency",
    "AuditEvent",
    "AuditFinding",
    "AuditSequence",
    "Case",
    "CaseAssignee",
    "CaseCapacity",
    "CasePurpose",
    "Client",
    "ClientKey",
    "Consent",
    "ConsentEvent",
    "DataCategory",
    "IdentityLink",
    "Officer",
    "OfficerRole",
    "Person",
    "Purpose",
    "ReplayGuard",
    "SigningKey",
    "Source",
    "SourceCategory",
    "metadata",
]
