"""The complete schema: importing this module registers every package's models on Base."""

from audit.models import AuditEvent, AuditSequence
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
    "AuditSequence",
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
