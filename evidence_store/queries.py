"""Every SQL statement the store, verify, report and deletion run against the index, by job.

The statements are written once, in the dialect both backends accept: SQLite runs them as
written (db.py holds its schema and connection), PostgreSQL through postgres.PgIndex, which
translates the placeholders and the two SQLite idioms used here (``INSERT OR IGNORE``,
``lastrowid``) and holds its own schema. So a legal change (a new state, a new hold kind) is made
in evidence_store.vocabulary and, where the index must learn it, here: nowhere else touches a
connection (tests/test_sql_boundary.py checks both).

``Queries`` wraps one connection: the store's own, or a verify worker's snapshot reader. Methods
return plain tuples or lists of them; they never commit: the caller's transaction (db.transaction,
PgIndex.transaction) decides that.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from evidence_store.index import Cursor, Index


class Queries:
    """The named statements over one index connection (sqlite3.Connection or postgres.PgIndex)."""

    def __init__(self, conn: Index | Any):
        self.conn = conn

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> Cursor:
        return self.conn.execute(sql, tuple(params))

    def _one(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        return self.conn.execute(sql, tuple(params)).fetchone()

    # -- objects (the index rows of content-addressed objects) ---------------------------------

    def index_object(self, sha256: str, size: int, kind: str, created_at: str) -> None:
        """Record an object; an object stored again after its deletion is live again."""
        self.conn.execute(
            "INSERT INTO objects (sha256, size, kind, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET deleted_at = NULL", (sha256, size, kind, created_at))

    # -- keys and store configuration (store/keys.py, store/facade.py) --------------------------

    # -- devices and their chains (store/devices.py) --------------------------------------------

    # -- ingest and quarantine (store/ingest.py) ------------------------------------------------

    # -- clips, holds, justification, access log (store/access.py, store/records.py) ------------

    # -- expiry, orphans, sweep (store/expiry.py) -----------------------------------------------

    # -- deletion on four-eyes approval (deletion.py) -------------------------------------------

    # -- verify (verify.py) ---------------------------------------------------------------------

    # -- report (report.py) ---------------------------------------------------------------------


def iterate(cursor: Cursor) -> Iterator[tuple]:
    """Rows of a cursor one by one (a PostgreSQL reader streams them from a server cursor)."""
    yield from cursor
