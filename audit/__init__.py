"""The tamper-evident audit log: canonical records appended with gap-free sequence numbers,
integrated into an RFC 9162 Merkle tree with signed checkpoints, searched by auditors."""

from __future__ import annotations

from flask import Flask

from audit.log import Appended, append, event_time, make_record
from audit.records import NonCanonicalRecord, canonical_json, leaf_hash, parse_canonical
from broker.config import ConfigError

__all__ = [
    "Appended",
    "NonCanonicalRecord",
    "append",
    "canonical_json",
    "event_time",
    "init_app",
    "leaf_hash",
    "make_record",
    "parse_canonical",
]


def init_app(app: Flask) -> None:
    """Check the audit settings, register the blueprint and the post-response integration."""
    from audit.integrator import schedule_after_response
    from audit.views import bp

    if int(app.config["AUDIT_BATCH_SIZE"]) <= 0:
        raise ConfigError("CASEBROKER_AUDIT_BATCH_SIZE must be positive")
    for key in ("AUDIT_INTEGRATE_INTERVAL", "AUDIT_RETENTION_DAYS"):
        if int(app.config[key]) < 0:
            raise ConfigError(f"CASEBROKER_{key} must not be negative")
    app.register_blueprint(bp)
    app.after_request(schedule_after_response)
