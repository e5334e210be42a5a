"""``migrate`` of a local store onto PostgreSQL and Ceph RGW beside a plain copy of the same data.

Run: ``python -m tests.benchmarks.bench_migrate`` (a few minutes; starts and stops its own
PostgreSQL, durable, and one-node Ceph cluster, bluestore, as bench_pg and bench_s3 do).

The store: CLIPS real clips (signed, encrypted; two segments each) and a log of EVENTS access
events about them (each with two personal texts), so the log tables dominate as in a city's store.
Ours: ``migrate`` as the CLI runs it, which verifies the local store first, re-hashes each object
before upload and reads it back after, copies every table in one transaction and compares each
table's rows on both sides. Reference, in the same run on the same servers: the least any copy
must do: the same rows of every table through PostgreSQL's COPY into a fresh database of the
same schema, and boto3's ``upload_file`` of the same object files into the same bucket. Goal:
at most four times the plain copy (verify, read-back and comparison each cost about one pass).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

CLIPS = 24
EVENTS = 200_000
BATCH = 10_000
GOAL = 4.0


def _row(name, figure, reference, reference_name, goal_text, ok):
    ratio = figure / reference if figure and reference else float("nan")
    return {"name": name, "figure": figure, "unit": "s", "reference": reference, "reference_name": reference_name,
            "ratio": ratio, "goal": goal_text, "ok": ok}


def _local_store(folder: Path, clips: int, events: int):
    from evidence_store import events as ev
    from evidence_store.clip.ids import format_time
    from evidence_store.store import Store
    from tests.clipfactory import DeviceFixture, make_clip
    from tests.evidence_store.conftest import put_and_ingest

    store = Store.init(folder / "store", b"bench", scrypt_log_n=10, actor="bench")
    cam = DeviceFixture.new("cam-01")
    store.enroll(cam.device_id, cam.public_key)
    now = datetime.now(UTC)
    ids = []
    for i in range(clips):
        clip = make_clip(folder / "outbox", cam, store.recipients, started_at=now - timedelta(hours=i + 1),
                         seconds=4.0, segments=2)
        put_and_ingest(store, clip)
        ids.append(clip.clip_id)
    time_text = format_time(now)
    for start in range(0, events, BATCH):
        with store._command() as tx:
            tx.append_many([ev.Event(ev.VIEW, time_text, ids[i % clips], clip=ids[i % clips],
                                     personal={"actor": "officer-a", "reason": "review"})
                            for i in range(start, min(events, start + BATCH))])
    return store


def _plain_copy(store, pg_server, bucket_client, bucket: str) -> float:
    """The reference: every table's rows by COPY into a fresh database, every object file by
    ``upload_file``. Returns seconds."""
    import psycopg

    from evidence_store import postgres
    from evidence_store.migrate import _batches

    url = pg_server.create_database()
    postgres.connect(url, origin="bench-reference", create=True).close()
    local = store.index
    tables = {t: local.migrate_layout(t) for t in local.migrate_tables()}
    files = [p for p in (store.root / "objects").rglob("*") if p.is_file()]
    begin = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        for table, (columns, _key) in tables.items():
            names = ", ".join(columns)
            with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                for batch in _batches(local, table, columns):
                    for row in batch:
                        copy.write_row(row)
        conn.commit()
    for path in files:
        bucket_client.upload_file(str(path), bucket, f"reference/{path.name}")
    return time.perf_counter() - begin


def run(clips: int = CLIPS, events: int = EVENTS) -> list[dict]:
    from tests.servers._process import ServerUnavailable
    from tests.servers.ceph import CephRGW
    from tests.servers.postgres import PostgresServer

    name = f"migrate a store of {clips} clips and {events:,} events to PostgreSQL + Ceph RGW"
    try:
        ceph = CephRGW.start(objectstore="bluestore")
    except ServerUnavailable as exc:
        return [_row(name, float("nan"), float("nan"), f"Ceph RGW cannot start: {exc}", f"<= {GOAL}x", False)]
    pg = PostgresServer.start(durable=True)
    saved = dict(os.environ)
    try:
        os.environ.update(ceph.env())
        os.environ.update(pg.env())
        with tempfile.TemporaryDirectory(prefix="bench-migrate-") as folder:
            from evidence_store.migrate import migrate

            store = _local_store(Path(folder), clips, events)
            bucket = ceph.create_bucket()
            reference = _plain_copy(store, pg, ceph.client(), bucket)
            root = store.root
            store.close()
            database = pg.create_database()
            begin = time.perf_counter()
            result = migrate(root, database, f"s3://{bucket}/city", say=lambda line: None)
            figure = time.perf_counter() - begin
            assert result.log_size >= events and result.objects_uploaded >= clips * 4
    finally:
        os.environ.clear()
        os.environ.update(saved)
        pg.stop()
        ceph.stop()
    return [_row(name, figure, reference, "COPY of the rows + upload_file of the objects", f"<= {GOAL}x the plain copy",
                 figure <= GOAL * reference)]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.benchmarks.__main__ import table

    result = run(*(int(a) for a in sys.argv[1:3]))
    print(table([("bench_migrate", r) for r in result]))
    sys.exit(0 if all(r["ok"] for r in result) else 1)
