"""The exchange's registry: agencies, data categories, purposes and sources.

Operators keep it in a file (``casebroker registry apply``); pages and notices show its
entries in the reader's language (``Names``).
"""

from broker.registry.document import RegistryFileError, read_file
from broker.registry.names import LANGUAGES, Names, label
from broker.registry.service import Change, apply, export

__all__ = [
    "LANGUAGES",
    "Change",
    "Names",
    "RegistryFileError",
    "apply",
    "export",
    "label",
    "read_file",
]
