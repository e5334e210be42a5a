"""The central backend (PostgreSQL) beside the local one (SQLite), same work, same run.

    python -m tests.benchmarks.bench_pg      (several minutes: it fills a million-event log twice)

Starts its own throwaway PostgreSQL (tests/servers/postgres.py) with fsync on (``durable=True``),
as a data centre runs it, on a Unix socket. Each measurement is bench_store's, run once on a
store whose index is in PostgreSQL (the figure) and once on a local store (the reference):

* appending 100,000 events, 1,000 per transaction, each signing a checkpoint: goal >= 5,000/s;
* verifying a log of 1,000,000 events (the fastest of three runs): goal < 10 s on PostgreSQL,
  < 5 s on SQLite;
* an expiry run over 100,000 clips (half due): no goal for PostgreSQL (the issue sets none; it is
  shown beside SQLite's), < 10 s on SQLite (bench_store's own).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from tests.benchmarks import bench_store


def _row(name, figure, unit, reference, goal, ok, higher_is_better=False):
    ratio = (reference / figure if higher_is_better else figure / reference) if figure and reference else float("nan")
    return {"name": name, "figure": figure, "unit": unit, "reference": reference, "ratio": ratio, "goal": goal,
            "ok": ok, "reference_name": "same on SQLite"}


@contextlib.contextmanager
def _backend(server):
    """bench_store's stores on ``server`` (a fresh database each) instead of SQLite files."""
    if server is None:
        yield
        return
    original = bench_store._new_store
    saved = {k: os.environ.get(k) for k in server.env()}
    os.environ.update(server.env())

    def new_store(folder, clock=None):
        return bench_store.Store.init(folder, bench_store.PASSPHRASE, scrypt_log_n=10, actor="bench", clock=clock,
                                      database=server.create_database())

    def settle(store):
        # A store fills its log over months, and autovacuum visits each table minutes after a
        # bulk load; here the load took a minute, so its pass over a million fresh rows would run
        # during the measurement. Done first, as a data centre's database would have it.
        import psycopg

        with psycopg.connect(store.index.conn.url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE)")

    settle_original = bench_store._settle
    bench_store._new_store = new_store
    bench_store._settle = settle
    try:
        yield
    finally:
        bench_store._new_store = original
        bench_store._settle = settle_original
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _measure(tmp: Path, server) -> dict[str, float]:
    """The figure of each measurement on one backend (PostgreSQL on ``server``, or SQLite)."""
    with _backend(server):
        append = bench_store.bench_append(tmp / "append")
        verify = bench_store.bench_verify_and_proof(tmp / "verify")[0]
        expire = bench_store.bench_expire(tmp / "expire")
    return {"append": append["figure"], "verify": verify["figure"], "expire": expire["figure"]}


def run() -> list[dict]:
    from tests.servers.postgres import PostgresServer

    server = PostgresServer.start(durable=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as folder:
            tmp = Path(folder)
            for name in ("local", "central"):
                for part in ("append", "verify", "expire"):
                    (tmp / name / part).mkdir(parents=True)
            local = _measure(tmp / "local", None)
            central = _measure(tmp / "central", server)
    finally:
        server.stop()
    events, verified, clips = bench_store.APPEND_EVENTS, bench_store.VERIFY_EVENTS, bench_store.EXPIRE_CLIPS
    return [
        _row(f"PostgreSQL: append {events:,} events", central["append"], "events/s", local["append"],
             ">= 5,000/s", central["append"] >= 5_000, higher_is_better=True),
        _row(f"PostgreSQL: verify a log of {verified:,} events", central["verify"], "s", local["verify"],
             "< 10 s (SQLite < 5 s)", central["verify"] < 10 and local["verify"] < 5),
        _row(f"PostgreSQL: expiry run over {clips:,} clips (half due)", central["expire"], "s", local["expire"],
             "SQLite < 10 s", local["expire"] < 10),
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.benchmarks.__main__ import table

    result = run()
    print(table([("bench_pg", r) for r in result]))
    sys.exit(0 if all(r["ok"] for r in result) else 1)
