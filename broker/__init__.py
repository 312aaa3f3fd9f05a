"""casebroker: cross-agency case-data sharing and identity broker."""

from broker.app import create_app
from broker.config import ConfigError

__all__ = ["ConfigError", "create_app"]
