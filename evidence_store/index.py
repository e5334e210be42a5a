"""The seam between the store and where its index and event log live.

Two implementations with one surface (``Index``):

* local, the embedded default: SQLite in the store folder (``evidence.db``, db.py);
* central: PostgreSQL (evidence_store.postgres), for a data centre whose docks, expiry timer and
  officers write one store from several machines. ``store.json`` then names the database by a
  libpq URL (``"database"``); the folder keeps the keys and configuration.

Both keep the same promises: a writing command is one transaction that appends its events and
signs its checkpoint before it commits (``db.transaction``), and readers see one consistent
state (``db.snapshot``). A store folder without ``"database"`` in ``store.json`` is a local store,
so every existing folder opens unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evidence_store import db

if TYPE_CHECKING:
    from evidence_store.postgres import PgIndex

#: ``store.json`` key naming a central database (absent: the local SQLite file).
DATABASE_KEY = "database"
LOCAL = "sqlite"
CENTRAL = "postgresql"


class Cursor(Protocol):
    def fetchone(self) -> tuple | None: ...

    #: The key the database generated for the row an INSERT added (postgres.PgIndex returns it too).
    @property
    def lastrowid(self) -> int | None: ...

    def fetchall(self) -> list[tuple]: ...

    def __iter__(self): ...


class Index(Protocol):
    """The surface of a central index connection (postgres.PgIndex). A local store holds a plain
    sqlite3.Connection, which has the first three; ``db.transaction`` and ``db.snapshot`` supply
    the last two for it."""

    def execute(self, sql: str, params: Iterable[Any] = ...) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> Any: ...

    def close(self) -> None: ...

    def transaction(self) -> AbstractContextManager: ...

    def snapshot(self) -> AbstractContextManager: ...


def backend_of(config: dict) -> str:
    """Which backend a store's configuration names."""
    return CENTRAL if config.get(DATABASE_KEY) else LOCAL


def backend_of_connection(conn: Any) -> str:
    return getattr(conn, "backend", LOCAL)


def check_database(url: str) -> str:
    """Validate a ``--database`` value before anything is created (UsageError otherwise)."""
    from evidence_store import postgres

    return postgres.check_url(url)


def open_index(root: Path, config: dict, *, create: bool = False) -> sqlite3.Connection | PgIndex:
    """Connect to the index of the store in ``root`` with configuration ``config``.

    ``create``: a new local database file, or a central database that must not yet hold a store.
    Raises db.DatabaseError (or a subclass) or UsageError, one line each.
    """
    url = config.get(DATABASE_KEY)
    if url:
        from evidence_store import postgres

        return postgres.connect(url, origin=config["origin"], create=create)
    return db.connect(root / db.DB_FILE, create=create)


def open_reader(source: tuple[str, str, str | None]) -> AbstractContextManager:
    """A connection of its own that reads what ``Queries.reader_source`` describes: the SQLite
    file, or the exported snapshot of a PostgreSQL reader (verify's worker processes)."""
    backend, where, snapshot_id = source
    if backend == CENTRAL:
        from evidence_store import postgres

        if snapshot_id is None:
            raise ValueError("a PostgreSQL reader needs an exported snapshot")
        return postgres.snapshot_reader(where, snapshot_id)
    return db.reader(where)
