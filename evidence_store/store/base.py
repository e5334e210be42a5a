"""What the store's job modules (keys, devices, ingest, access, expiry) may use of the Store they
are mixed into: the facade's attributes and transactions, and the few methods one job calls of
another. Declared once here so that each module is type-checked on its own; facade.py and the
job modules define them (mypy checks that their definitions match these)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from evidence_store import logstate, retention
from evidence_store.clip.clock import Clock
from evidence_store.clip.note import NoteSigner, NoteVerifier
from evidence_store.log import EventLog
from evidence_store.objects import ObjectStore
from evidence_store.queries import Queries
from evidence_store.store.records import ClipInfo, DeviceInfo

if TYPE_CHECKING:
    from evidence_store.store.facade import _Tx


class StoreBase(Protocol):
    """The Store as its job modules see it (evidence_store.store.facade.Store implements it)."""

    # -- the facade's (facade.py): the only holder of the connection --------------------------
    root: Path
    config: dict
    #: Every SQL statement the store runs, over its connection (evidence_store.queries).
    index: Queries
    clock: Clock
    actor: str
    objects: ObjectStore
    origin: str
    policy: retention.Policy
    verifier: NoteVerifier
    #: The log key, read at its first use (keys.py: ``signer``).
    _signer: NoteSigner | None = None

    def _command(self) -> AbstractContextManager[_Tx]:
        """One writing command: its transaction, its events, its signed checkpoint."""
        ...

    def _transaction(self) -> AbstractContextManager[None]:
        """A writing transaction that appends no event (the last docking time)."""
        ...

    def _snapshot(self) -> AbstractContextManager[None]:
        """A read transaction: every query inside sees one state."""
        ...

    def _log(self, writable: bool = False) -> EventLog: ...

    # -- keys.py ------------------------------------------------------------------------------
    def now(self) -> datetime: ...

    @property
    def signer(self) -> NoteSigner: ...

    @property
    def verifier_key(self) -> str: ...

    @property
    def recipients(self) -> list[str]: ...

    @property
    def log(self) -> EventLog: ...

    def checkpoint_file(self) -> bytes | None: ...

    def check_config(self, state: logstate.LogState | None = None) -> None: ...

    # -- devices.py ---------------------------------------------------------------------------
    def device(self, device_id: str) -> DeviceInfo | None: ...

    def _logged_device(self, device_id: str) -> logstate.DeviceFacts | None: ...

    # -- access.py ----------------------------------------------------------------------------
    def clip(self, clip_id: str) -> ClipInfo: ...

    def segments(self, clip_id: str) -> list[dict]: ...

    # -- locks.py -----------------------------------------------------------------------------
    def item_objects(self, item_id: str) -> tuple[list[str], datetime, bool]: ...

    def lock_objects(self, hashes: Iterable[str], deadline: datetime, *, held: bool | None = None) -> int: ...

    def apply_lock(self, item_id: str) -> int: ...

