"""The evidence store: encrypted objects, a Merkle event log, retention, and the officers' CLI.

This package file stays light on purpose: the camera imports ``evidence_store.clip`` and must
never load SQLite or PyAV through this ``__init__``.
"""

__version__ = "0.1.0"
