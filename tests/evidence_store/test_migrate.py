"""``bodycam-evidence migrate``: a local store moved onto the real PostgreSQL and Ceph RGW servers
(tests/servers): the same log and rows, every live object verified and locked, resumable after
SIGKILL at any instant, bad input refused with one line and the local store left as it was."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence_store import merkle, postgres
from evidence_store.checkpoint import open_checkpoint, parse_consistency_proof
from evidence_store.cli import main
from evidence_store.migrate import MARKER_FILE, table_digest
from evidence_store.queries import Queries
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N, put_and_ingest
from tests.servers._process import free_port

pytest.importorskip("boto3", reason="boto3 is in the 'test' and 'central' extras")
pytestmark = pytest.mark.usefixtures("postgres_server", "ceph_rgw")

ROOT = Path(__file__).resolve().parents[2]
#: Tables that only grow by the migrate event (the log and its texts): compared below N.
LOG_TABLES = {"events", "hashes", "checkpoints", "texts", "event_texts"}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def local(tmp_path, monkeypatch, capsys):
    """A local store with what a city's store holds: clips stored, held, justified and viewed, a
    quarantined copy, an expired clip, and an export made before the move."""
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", str(TEST_LOG_N))
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    pw = tmp_path / "pass"
    pw.write_bytes(PASSPHRASE + b"\n")
    root = tmp_path / "store"
    assert run(capsys, "--store", root, "init", "--passphrase-file", pw)[0] == 0
    now = datetime.now(UTC)
    with Store.open(root) as store:
        cam = DeviceFixture.new("cam-07")
        store.enroll(cam.device_id, cam.public_key)
        store.assign(cam.device_id, "officer-17")
        clips = {}
        for name, age in [("held", timedelta(days=13)), ("fresh", timedelta(hours=2)), ("late", timedelta(days=15))]:
            clip = make_clip(tmp_path / "outbox", cam, store.recipients, started_at=now - age)
            put_and_ingest(store, clip)
            clips[name] = clip.clip_id
        forged = make_clip(tmp_path / "forged", DeviceFixture.new("cam-07"), store.recipients, clip_id=clips["fresh"])
        refs = {n: store.put_object(io.BytesIO(d), len(d)) for n, d in forged.segments.items()}
        clips["quarantined"] = store.quarantine(
            reason="manifest signature does not verify", device_id="cam-07", clip_id=clips["fresh"],
            manifest_bytes=forged.manifest_bytes, journal_bytes=forged.journal_bytes, objects=refs)
    assert run(capsys, "--store", root, "expire")[0] == 0  # the late clip goes at once
    assert run(capsys, "--store", root, "hold", clips["held"], "--case", "AZ 4711/26", "--reason", "assault")[0] == 0
    assert run(capsys, "--store", root, "hold", clips["quarantined"], "--case", "AZ 9/26", "--reason", "forgery")[0] == 0
    code, _, err = run(capsys, "--store", root, "export", clips["held"], "--out", tmp_path / "export",
                       "--reason", "prosecutor request", "--passphrase-file", pw)
    assert code == 0, err
    assert run(capsys, "--store", root, "verify-export", tmp_path / "export")[0] == 0
    return root, clips, tmp_path / "export"


@pytest.fixture
def targets(postgres_url, s3_bucket):
    return postgres_url, f"s3://{s3_bucket}/city-a"


def snapshot(root: Path) -> dict:
    """What must not change when migrate refuses: store.json, the database's bytes, no marker."""
    db = root / "evidence.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    frozen = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone()[0]
    con.close()
    return {"store.json": (root / "store.json").read_bytes(), "db": hashlib.sha256(db.read_bytes()).hexdigest(),
            "marker": (root / MARKER_FILE).exists(), "triggers": frozen}


def tables_of(queries: Queries) -> dict[str, tuple[list[str], list[str]]]:
    return {t: queries.migrate_layout(t) for t in queries.migrate_tables()}


def local_digests(root: Path) -> tuple[int, dict]:
    """Log size and, per non-log table, (columns, (rows, digest)) of the local store."""
    with Store.open(root) as store:
        queries = store.index
        return store.log.size(), {t: (c, table_digest(queries, t, c))
                                  for t, (c, _k) in tables_of(queries).items() if t not in LOG_TABLES}


def object_versions(bucket: str, prefix: str) -> dict[str, int]:
    from evidence_store.objects_s3 import make_client

    client = make_client()
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for version in page.get("Versions", []):
            name = version["Key"].rpartition("/")[2]
            counts[name] = counts.get(name, 0) + 1
        assert not page.get("DeleteMarkers")
    return counts


def check_migrated(root: Path, size: int, digests: dict, clips: dict, objects_url: str) -> Store:
    """The central store after a finished migration: N leaves as before plus one migrate event,
    every non-log table the same rows, every live object once, locked as its clip demands."""
    store = Store.open(root)
    assert store.log.size() == size + 1
    body = json.loads(store.log.leaf(size))
    assert body["kind"] == "config" and body["migrated"]["objects"] == objects_url and body["migrated"]["size"] == size
    assert sum(1 for e in store.events() if e["kind"] == "config" and "migrated" in e) == 1
    for table, (columns, digest) in digests.items():
        assert table_digest(store.index, table, columns) == digest, table
    bucket, _, prefix = objects_url[len("s3://"):].partition("/")
    versions = object_versions(bucket, prefix)
    live = {}
    for item in store.clips():
        for sha in [item.manifest_sha256, item.journal_sha256] + [s["sha256"] for s in store.segments(item.clip_id)]:
            live[sha] = item
    assert set(versions) == set(live) and set(versions.values()) == {1}
    now = datetime.now(UTC)
    for sha, item in live.items():
        status = store.objects.lock_status(sha)
        assert status.mode == "GOVERNANCE" and status.recorded_sha256 == sha
        deadline = datetime.fromisoformat(item.deadline.replace("Z", "+00:00"))
        assert status.retain_until >= min(deadline.replace(microsecond=0), now + timedelta(minutes=59))
        assert status.legal_hold == bool(item.holds), item.clip_id
    assert clips["late"] not in {c.clip_id for c in store.clips()}
    return store


def test_migrate_cli_same_log_rows_locked_objects_then_verify_and_old_export_pass(local, targets, capsys):
    root, clips, export = local
    database, objects_url = targets
    size, digests = local_digests(root)
    with Store.open(root) as before:
        old_checkpoints = before.log.checkpoints()
        old_leaves = [before.log.leaf(i) for i in range(size)]
    code, out, err = run(capsys, "--store", root, "migrate", "--database", database, "--objects", objects_url)
    assert code == 0, err
    assert f"moved {root}: {size} log entries" in out and "checkpoint of size" in out
    config = json.loads((root / "store.json").read_text())
    assert (config["database"], config["objects"]) == (database, objects_url)
    assert not (root / MARKER_FILE).exists()
    with check_migrated(root, size, digests, clips, objects_url) as store:
        assert [store.log.leaf(i) for i in range(size)] == old_leaves
        assert store.log.checkpoints()[:len(old_checkpoints)] == old_checkpoints
        assert (root / "log.checkpoint").read_bytes() == store.log.latest_checkpoint()
    code, out, err = run(capsys, "--store", root, "verify")
    assert code == 0, out + err
    # The export made before the move: it verifies, its checkpoint is one the central log keeps,
    # and the central log proves that it extends it.
    code, out, _ = run(capsys, "verify-export", export)
    assert code == 0, out
    exported = (export / "checkpoint").read_bytes()
    with Store.open(root) as store:
        old = open_checkpoint(exported, store.verifier, store.origin)
        assert store.log.checkpoint_at(old.size) == exported
    # The next command signs size N+2, consistent with every checkpoint before the move.
    assert run(capsys, "--store", root, "hold", clips["fresh"], "--case", "AZ 1/27", "--reason", "review")[0] == 0
    code, out, _ = run(capsys, "--store", root, "consistency", str(old.size))
    old_size, proof, note = parse_consistency_proof(out)
    with Store.open(root) as store:
        new = open_checkpoint(note, store.verifier, store.origin)
        assert new.size == size + 2 and old_size == old.size
        merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        assert open_checkpoint((root / "log.checkpoint").read_bytes(), store.verifier).size == size + 2
        assert store.objects.lock_status(store.clip(clips["fresh"]).manifest_sha256) is not None
    assert run(capsys, "--store", root, "verify")[0] == 0
    # The local database is kept, frozen: a writer still holding it is refused, not lost.
    con = sqlite3.connect(root / "evidence.db")
    with pytest.raises(sqlite3.IntegrityError, match="frozen"):
        con.execute("INSERT INTO meta (key, value) VALUES ('x', 'y')")
    con.close()
    code, out, _ = run(capsys, "--store", root, "migrate", "--database", database, "--objects", objects_url)
    assert code == 0 and "nothing to do" in out


def test_migrate_killed_at_instants_then_rerun_finishes_nothing_doubled(local, targets, capsys):
    """The real CLI as a subprocess, SIGKILLed (a few milliseconds of random delay after a progress
    line) while copying objects, copying tables, right after freezing the local store, after the
    central commit and after the switch of store.json; rerun until it says there is nothing to do."""
    root, clips, export = local
    database, objects_url = targets
    size, digests = local_digests(root)
    env = dict(os.environ)
    argv = [sys.executable, "-m", "evidence_store.cli", "-v", "--store", str(root), "migrate",
            "--database", database, "--objects", objects_url]
    jitter = random.Random(12)
    kills, frozen_refusals = [], 0
    patterns = ["migrate: object ", "migrate: table clips", "migrate: tables compared", "migrate: local store frozen",
                "migrate: central log", "migrate: store.json now"]
    for pattern in [*patterns, None]:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if pattern is not None and pattern in line:
                if pattern in patterns[:2]:  # long phases: land anywhere in them
                    time.sleep(jitter.uniform(0, 0.02))
                proc.send_signal(signal.SIGKILL)
                break
        out, err = proc.communicate(timeout=120)
        if proc.returncode == -signal.SIGKILL:
            kills.append(pattern)
            if snapshot(root)["triggers"] and "database" not in json.loads((root / "store.json").read_text()):
                # Between freeze and switch: a writer of the local store is refused, in one line.
                code, _, err = run(capsys, "--store", root, "hold", clips["fresh"], "--case", "X 1", "--reason", "r")
                assert code == 1 and "this local database is frozen" in err.splitlines()[0], err
                frozen_refusals += 1
            continue
        assert proc.returncode == 0, err
    # A kill at a phase's end may land in the next phase, which a rerun then skips (it is done):
    # every long phase is hit, and (below) at least one kill lands between the freeze and the switch.
    assert set(kills) >= set(patterns[:3]), f"killed only at {kills}"
    assert frozen_refusals >= 1
    final = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0 and "nothing to do" in final.stdout, final.stderr
    check_migrated(root, size, digests, clips, objects_url).close()
    result = subprocess.run([sys.executable, "-m", "evidence_store.cli", "--store", str(root), "verify"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert subprocess.run([sys.executable, "-m", "evidence_store.cli", "verify-export", str(export)], cwd=ROOT,
                          env=env, capture_output=True, timeout=120).returncode == 0


# -- bad input: one line, non-zero, the local store as it was --------------------------------------


def refused(capsys, root: Path, database: str, objects_url: str, code: int, first_line: str) -> None:
    before = snapshot(root)
    got, out, err = run(capsys, "--store", root, "migrate", "--database", database, "--objects", objects_url)
    lines = err.splitlines()
    assert got == code, err
    assert lines[0].startswith(f"bodycam-evidence: error: {first_line}"), err
    assert "Traceback" not in err and all(line.startswith("hint: ") for line in lines[1:])
    assert snapshot(root) == before
    assert run(capsys, "--store", root, "verify")[0] == 0


def test_migrate_unreachable_database_refused_local_untouched(local, s3_bucket, tmp_path, capsys):
    url = f"postgresql://bodycam@/db?host={tmp_path}&port=5999"
    refused(capsys, local[0], url, f"s3://{s3_bucket}/a", 1, f"cannot reach the database server of {url}")


def test_migrate_wrong_database_credentials_refused(local, targets, tmp_path, monkeypatch, capsys):
    wrong = tmp_path / "pgpass"
    wrong.write_text("*:*:*:bodycam:not-the-password\n")
    wrong.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(wrong))
    refused(capsys, local[0], *targets, 1, f"cannot connect to {targets[0]}: the server refused the credentials")


def test_migrate_unreachable_s3_refused(local, targets, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    refused(capsys, local[0], *targets, 1, "cannot reach the S3 endpoint")


def test_migrate_wrong_s3_credentials_refused(local, targets, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    refused(capsys, local[0], *targets, 1, "the S3 storage")


def test_migrate_bucket_without_object_lock_refused(local, postgres_url, ceph_rgw, s3_bucket, capsys):
    plain = ceph_rgw.create_bucket(object_lock=False)
    refused(capsys, local[0], postgres_url, f"s3://{plain}/a", 1,
            f"S3 bucket {plain} cannot hold evidence: Object Lock is not enabled")


def test_migrate_database_of_another_store_refused(local, targets, tmp_path, capsys):
    database, objects_url = targets
    other = Store.init(tmp_path / "other", PASSPHRASE, scrypt_log_n=TEST_LOG_N, database=database)
    other.close()
    refused(capsys, local[0], database, objects_url, 2, f"{database} already holds another evidence store")


def test_migrate_partial_migration_of_another_store_refused(local, targets, tmp_path, capsys):
    database, objects_url = targets
    # What another store's interrupted migrate leaves: its schema and origin, no log yet.
    postgres.connect(database, origin="bodycam-evidence.elsewhere/0badcafe", create=True).close()
    refused(capsys, local[0], database, objects_url, 2, f"{database} already holds another evidence store")


def test_migrate_prefix_with_another_stores_objects_refused(local, targets, capsys):
    from evidence_store.objects_s3 import S3Objects

    database, objects_url = targets
    S3Objects(objects_url).put_bytes(b"another store's ciphertext", retain_until=datetime.now(UTC) + timedelta(days=1))
    refused(capsys, local[0], database, objects_url, 2, f"{objects_url} already holds objects of another store")


def test_migrate_writer_holding_the_lock_refused(local, targets, monkeypatch, capsys):
    from evidence_store import migrate

    monkeypatch.setattr(migrate, "LOCK_WAIT_MS", 300)
    root = local[0]
    writer = sqlite3.connect(root / "evidence.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        code, _, err = run(capsys, "--store", root, "migrate", "--database", targets[0], "--objects", targets[1])
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert code == 1 and err.startswith("bodycam-evidence: error: another writer"), err
    assert "stop the docks" in err
    assert json.loads((root / "store.json").read_text()).get("database") is None
    assert not (root / MARKER_FILE).exists()


def test_migrate_local_store_with_a_fault_refused(local, targets, capsys):
    root = local[0]
    with Store.open(root) as store:
        sha = store.clip(local[1]["fresh"]).manifest_sha256
    path = root / "objects" / sha[:2] / sha
    path.chmod(0o640)
    path.write_bytes(path.read_bytes() + b"x")
    before = snapshot(root)
    code, _, err = run(capsys, "--store", root, "migrate", "--database", targets[0], "--objects", targets[1])
    assert code == 3 and "fault(s), first object-altered" in err.splitlines()[0], err
    assert snapshot(root) == before


class _Interrupted(Exception):
    pass


def interrupt_at(words: str):
    def say(line: str) -> None:
        if line.startswith(words):
            raise _Interrupted(line)
    return say


def test_migrate_rerun_after_holds_and_deletion_changed_locks_as_they_are_now(local, targets, capsys):
    """An interrupted run copied and locked every object; before the rerun an officer released
    one hold and placed another, and a clip was deleted early (four eyes). The rerun locks each
    object as things are now and removes the copy of the deleted clip: verify passes."""
    from evidence_store.deletion import approve_deletion, request_deletion
    from evidence_store.migrate import migrate
    from evidence_store.objects_s3 import S3Objects
    from evidence_store.vocabulary import ClipState

    root, clips, _ = local
    database, objects_url = targets
    with pytest.raises(_Interrupted):
        migrate(root, database, objects_url, say=interrupt_at("table clips"))
    assert json.loads((root / "store.json").read_text()).get("database") is None
    with Store.open(root) as store:
        assert not store.index.migrate_frozen()
        gone = {store.clip(clips["fresh"]).manifest_sha256}
    assert all(S3Objects(objects_url).exists(sha) for sha in gone)  # copied before the interruption
    assert run(capsys, "--store", root, "release", clips["held"], "--case", "AZ 4711/26", "--reason", "closed")[0] == 0
    with Store.open(root, actor="officer-a") as store:
        request = request_deletion(store, clips["fresh"], reason="core of private life")
    with Store.open(root, actor="officer-b") as store:
        approve_deletion(store, request.request_id, reason="confirmed")
    size, digests = local_digests(root)
    result = migrate(root, database, objects_url)
    assert result.objects_present > 0 and result.log_size == size
    with check_migrated(root, size, digests, clips, objects_url) as store:
        assert store.clip(clips["fresh"]).state == ClipState.EXPIRED
        assert not any(store.objects.exists(sha) for sha in gone)
        assert store.objects.lock_status(store.clip(clips["held"]).manifest_sha256).legal_hold is False
    assert run(capsys, "--store", root, "verify")[0] == 0
