"""The tamper-evident audit log: canonical records appended with gap-free sequence numbers."""

from audit.log import Appended, append, event_time, make_record
from audit.records import NonCanonicalRecord, canonical_json, leaf_hash, parse_canonical

__all__ = [
    "Appended",
    "NonCanonicalRecord",
    "append",
    "canonical_json",
    "event_time",
    "leaf_hash",
    "make_record",
    "parse_canonical",
]
