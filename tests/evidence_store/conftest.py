"""Fixtures for the evidence store tests: a store with a low scrypt work factor, a fake clock,
an enrolled camera, and helpers that ingest real signed clips (tests/clipfactory.py)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.journal import parse_journal
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.clock import FakeClock

PASSPHRASE = b"correct horse battery staple"
#: scrypt 2^10 instead of age's 2^18: tests open the identity many times.
TEST_LOG_N = 10
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


#: Test modules that exercise a store: each of their tests runs once per backend (issue 11: the
#: store's whole suite against both). The others test formats and pure functions. test_redact builds
#: one store per backend (its detector runs are slow); its tests of the video alone run on SQLite.
STORE_MODULES = {"test_cli", "test_export", "test_log", "test_permissions", "test_report", "test_store",
                 "test_verify", "test_view", "test_caseexport", "test_deletion", "test_tamper",
                 "test_redact"}
#: "postgresql+s3": the data centre's store, PostgreSQL index and objects on S3 with Object Lock.
BACKENDS = ("sqlite", "postgresql", "postgresql+s3")


#: The store modules that also run with objects on S3 (Ceph RGW): those whose tests touch objects
#: in every way the store does (ingest, hold, release, expiry, deletion, verify, the CLI). The
#: others (export, view, log, report, case export, and test_permissions, which is about the
#: folder's own file modes) read objects only through the same ``open``; each S3 test costs
#: seconds of network round trips, and the whole run must stay short.
S3_MODULES = {"test_store", "test_cli", "test_verify", "test_deletion"}


def pytest_generate_tests(metafunc):
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "backend" in metafunc.fixturenames and module in STORE_MODULES:
        wanted = getattr(metafunc.function, "backends", None) or BACKENDS
        if module not in S3_MODULES:
            wanted = [b for b in wanted if not b.endswith("+s3")]
        metafunc.parametrize("backend", wanted, indirect=True)


def pytest_collection_modifyitems(config, items):
    """test_verify scans the log two ways (one process, worker processes); where the objects are
    does not change the log scan, so the S3 backend runs the one-process way only."""
    dropped = [item for item in items if getattr(item, "callspec", None) is not None
               and item.callspec.params.get("backend") == "postgresql+s3"
               and item.callspec.params.get("scan_mode") == "worker processes"]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        gone = set(dropped)
        items[:] = [item for item in items if item not in gone]


def local_only(function):
    """Mark a test that is about the local backend's own files (evidence.db, its modes, SQLite
    itself): it runs with SQLite only."""
    function.backends = ("sqlite",)
    return function


def local_objects(function):
    """Mark a test that is about the object folder's own files (modes, temp files, file times):
    it runs with both index backends, but not with objects on S3."""
    function.backends = ("sqlite", "postgresql")
    return function


@pytest.fixture(autouse=True)
def backend(request, monkeypatch):
    """The index backend of every store a test creates: "sqlite" (the local default) or
    "postgresql" (a fresh database on the real test server for each ``Store.init``, the CLI's
    included; the password reaches libpq through PGPASSFILE, as in production)."""
    name = getattr(request, "param", "sqlite")
    if name in ("postgresql", "postgresql+s3"):
        server = request.getfixturevalue("postgres_server")
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        bucket = None
        if name == "postgresql+s3":
            pytest.importorskip("boto3", reason="boto3 is in the 'test' and 'central' extras")
            rgw = request.getfixturevalue("ceph_rgw")
            for key, value in rgw.env().items():
                monkeypatch.setenv(key, value)
            bucket = _shared_bucket(rgw)
        original = Store.init.__func__

        def init(cls, root, passphrase, *, database=None, objects=None, **kwargs):
            if database is None:
                database = server.create_database()
            if objects is None and bucket is not None:
                objects = f"s3://{bucket}/store-{os.urandom(6).hex()}"  # a store of its own
            return original(cls, root, passphrase, database=database, objects=objects, **kwargs)

        monkeypatch.setattr(Store, "init", classmethod(init))
    return name


def _shared_bucket(rgw) -> str:
    """One Object Lock bucket for the run's stores on S3 (each gets its own prefix)."""
    if getattr(rgw, "_store_bucket", None) is None:
        rgw._store_bucket = rgw.create_bucket()
    return rgw._store_bucket


def on_s3(store) -> bool:
    return bool(store.objects.locking)


def tamper_object(store, sha256: str, data: bytes) -> None:
    """Replace an object's bytes as an intruder would: in the folder by rewriting the file; on S3
    (where the locked version cannot be changed) by writing a newer version with ordinary rights."""
    if on_s3(store):
        store.objects.client.put_object(Bucket=store.objects.bucket, Key=store.objects.key(sha256), Body=data)
        return
    path = store.objects.path(sha256)
    os.chmod(path, 0o644)
    path.write_bytes(data)


def remove_object(store, sha256: str) -> None:
    """Remove an object as an intruder would: unlink the file; on S3 (where a locked version
    cannot be deleted without the bypass right) a plain DELETE, which hides it behind a delete marker."""
    if on_s3(store):
        store.objects.client.delete_object(Bucket=store.objects.bucket, Key=store.objects.key(sha256))
        return
    store.objects.path(sha256).unlink()


@pytest.fixture(autouse=True)
def _low_scrypt(monkeypatch):
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", str(TEST_LOG_N))


@pytest.fixture
def clock():
    return FakeClock(T0)


@pytest.fixture
def store(tmp_path, clock):
    s = Store.init(tmp_path / "store", PASSPHRASE, scrypt_log_n=TEST_LOG_N, clock=clock, actor="officer-a")
    yield s
    s.close()


@pytest.fixture
def camera(store):
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    return cam


def put_and_ingest(store, clip, *, flags=()):
    """What the dock does for a verified clip: copy the segments, then one ingest transaction."""
    refs = {name: store.put_object(io.BytesIO(data), len(data)) for name, data in clip.segments.items()}
    device = store.device(clip.manifest.device_id)
    journal = parse_journal(clip.journal_bytes, DevicePublicKey.parse(device.public_key), clip.clip_id)
    assert journal.entries
    states = {s.name: ("cut" if s.cut else "whole") for s in clip.manifest.segments}
    return store.ingest(clip.manifest_bytes, clip.journal_bytes, clip.manifest, refs,
                        segment_states=states, flags=list(flags))


@pytest.fixture
def add_clip(store, camera, tmp_path, clock):
    """add_clip(age=timedelta, **make_clip options) -> Clip, recorded ``age`` before the clock."""
    outbox = tmp_path / "outbox"

    def add(age: timedelta = timedelta(hours=1), **kwargs):
        kwargs.setdefault("started_at", clock.now() - age)
        clip = make_clip(outbox, kwargs.pop("device", camera), store.recipients, **kwargs)
        put_and_ingest(store, clip)
        return clip

    return add
