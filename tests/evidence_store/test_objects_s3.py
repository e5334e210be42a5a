"""The S3 object store against a real Ceph RGW with Object Lock (tests/servers/ceph.py).

Every test gets a fresh Object Lock bucket and boto3's own environment variables (endpoint,
keys), so S3Objects is opened exactly as a deployment opens it: by URL, credentials from the
environment. Raw boto3 calls play the other parties: an ordinary S3 user trying to delete early,
a forger writing a new version.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from evidence_store.errors import IntegrityError, UsageError
from evidence_store.objects import LockTarget, ObjectTooLarge
from tests.servers._process import free_port

boto3 = pytest.importorskip("boto3", reason="boto3 is in the 'test' and 'central' extras")
from botocore.exceptions import ClientError  # noqa: E402

from evidence_store.objects_s3 import (  # noqa: E402
    LOCK_MODE,
    MIN_RETENTION,
    OBJECT_ALTERED,
    OBJECT_MISSING,
    OBJECT_UNLOCKED,
    S3Error,
    S3Objects,
    parse_s3_url,
)

DAY = timedelta(days=1)


#: One moment for the whole module: two deadlines computed a call apart could straddle a second
#: (S3 keeps whole seconds), and a lock checked against the later one looked too short.
_NOW = datetime.now(UTC).replace(microsecond=0)


def _deadline(days: float = 14) -> datetime:
    return _NOW + timedelta(days=days)


@pytest.fixture
def store(s3_bucket):
    return S3Objects(f"s3://{s3_bucket}/city-a")


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# -- parsing (no server) -------------------------------------------------------------------------

def test_parse_s3_url_bucket_and_prefix_split():
    assert parse_s3_url("s3://evidence-city/store/a/") == ("evidence-city", "store/a/")
    assert parse_s3_url("s3://evidence-city") == ("evidence-city", "")


@pytest.mark.parametrize("url", ["evidence", "s3://", "s3://UPPER/x", "s3://a/x", "s3://bucket/../x",
                                 "s3://bucket/a//b", "s3://bucket/a b", "https://bucket/x"])
def test_parse_s3_url_malformed_refused(url):
    with pytest.raises(UsageError):
        parse_s3_url(url)


def test_objects_s3_import_loads_no_boto3():
    code = ("import sys, evidence_store, evidence_store.objects, evidence_store.objects_s3; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- round trip ----------------------------------------------------------------------------------

def test_s3_objects_put_open_exists_list_delete_round_trip(store):
    data = os.urandom(300_000)
    deadline = _deadline()
    ref = store.put(io.BytesIO(data), len(data), retain_until=deadline)
    assert ref.sha256 == hashlib.sha256(data).hexdigest() and ref.size == len(data)
    small = store.put_bytes(b"signed manifest", retain_until=deadline)
    assert store.exists(ref.sha256) and store.exists(small.sha256)
    with store.open(ref.sha256) as f:
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]
    assert store.read(small.sha256) == b"signed manifest"
    assert store.rehash(ref.sha256) == (ref.sha256, len(data))
    assert list(store.names()) == sorted([ref.sha256, small.sha256])
    assert 0 <= store.age_seconds(ref.sha256, time.time()) < 600
    assert list(store.tmp_files()) == []
    assert store.check(ref.sha256, len(data), deadline=deadline) == []
    assert store.delete(ref.sha256) is True
    assert store.delete(ref.sha256) is False
    assert not store.exists(ref.sha256)
    assert list(store.names()) == [small.sha256]
    with pytest.raises(IntegrityError, match="is missing"):
        store.open(ref.sha256)


def test_s3_objects_put_locks_until_deadline_in_governance_mode(store):
    deadline = _deadline()
    ref = store.put_bytes(b"segment", retain_until=deadline)
    status = store.lock_status(ref.sha256)
    assert status.mode == LOCK_MODE == "GOVERNANCE"
    assert status.retain_until == deadline
    assert not status.legal_hold
    assert status.recorded_sha256 == ref.sha256


def test_s3_objects_deadline_already_past_locked_for_minimum_retention(store):
    before = datetime.now(UTC)
    ref = store.put_bytes(b"late clip", retain_until=before - 3 * DAY)
    until = store.lock_status(ref.sha256).retain_until
    assert before + MIN_RETENTION <= until <= datetime.now(UTC) + MIN_RETENTION + timedelta(seconds=2)
    # Expiry still deletes it at once: it holds the bypass right.
    assert store.delete(ref.sha256) is True


def test_s3_objects_same_bytes_twice_both_versions_deleted(store, ceph_rgw):
    ref = store.put_bytes(b"rerun after a crash", retain_until=_deadline())
    store.put_bytes(b"rerun after a crash", retain_until=_deadline())
    versions = ceph_rgw.client().list_object_versions(Bucket=store.bucket, Prefix=store.key(ref.sha256))["Versions"]
    assert len(versions) == 2
    assert store.delete(ref.sha256) is True
    assert "Versions" not in ceph_rgw.client().list_object_versions(Bucket=store.bucket, Prefix=store.key(ref.sha256))


def test_s3_objects_multipart_upload_round_trip_locked(s3_bucket):
    store = S3Objects(f"s3://{s3_bucket}/big", multipart_threshold=5 << 20, part_size=5 << 20)
    data = os.urandom((11 << 20) + 123)
    deadline = _deadline()
    ref = store.put(io.BytesIO(data), len(data), retain_until=deadline, legal_hold=True)
    assert store.rehash(ref.sha256) == (hashlib.sha256(data).hexdigest(), len(data))
    status = store.lock_status(ref.sha256)
    assert (status.mode, status.retain_until, status.legal_hold) == (LOCK_MODE, deadline, True)
    assert store.check(ref.sha256, len(data), deadline=deadline, held=True) == []
    assert list(store.incomplete_uploads()) == []
    store.set_legal_hold(ref.sha256, False)
    assert store.delete(ref.sha256) is True


def test_s3_objects_more_bytes_than_allowed_nothing_stored(store):
    with pytest.raises(ObjectTooLarge):
        store.put(io.BytesIO(b"x" * 1000), 999, retain_until=_deadline())
    assert list(store.names()) == []



def test_s3_objects_bytes_changed_in_transit_refused_nothing_stored(store):
    def flip_first_byte(request, **_):
        body = request.body.read()
        request.body = bytes([body[0] ^ 1]) + body[1:]

    # After signing: the storage sees other bytes than the signed SHA-256 (the object's name).
    store.client.meta.events.register("before-send.s3.PutObject", flip_first_byte)
    with pytest.raises(S3Error, match="XAmzContentSHA256Mismatch|BadDigest") as exc:
        store.put_bytes(b"segment bytes on the wire", retain_until=_deadline())
    _one_line(exc)
    store.client.meta.events.unregister("before-send.s3.PutObject", flip_first_byte)
    assert list(store.names()) == []

# -- the lock ------------------------------------------------------------------------------------

def test_s3_objects_retention_refuses_early_delete_without_bypass(store, ceph_rgw):
    ref = store.put_bytes(b"recording", retain_until=_deadline())
    client = ceph_rgw.client()
    version = store.lock_status(ref.sha256).version_id
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=store.bucket, Key=store.key(ref.sha256), VersionId=version)
    assert store.rehash(ref.sha256)[0] == ref.sha256
    # The store's own delete bypasses GOVERNANCE (expiry, lawful early deletion).
    assert store.delete(ref.sha256) is True


def test_s3_objects_legal_hold_blocks_delete_even_with_bypass(store, ceph_rgw):
    ref = store.put_bytes(b"evidence", retain_until=_deadline(), legal_hold=True)
    assert store.lock_status(ref.sha256).legal_hold
    with pytest.raises(S3Error, match="refused to delete 1 object version") as exc:
        store.delete(ref.sha256)
    _one_line(exc)
    client = ceph_rgw.client()
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=store.bucket, Key=store.key(ref.sha256),
                             VersionId=store.lock_status(ref.sha256).version_id, BypassGovernanceRetention=True)
    assert store.exists(ref.sha256)
    assert store.set_legal_hold(ref.sha256, False) == 1
    assert store.delete(ref.sha256) is True


def test_s3_objects_legal_hold_set_on_every_version(store):
    ref = store.put_bytes(b"held twice", retain_until=_deadline())
    store.put_bytes(b"held twice", retain_until=_deadline())
    assert store.set_legal_hold(ref.sha256, True) == 2
    with pytest.raises(S3Error, match="refused to delete 2 object version"):
        store.delete(ref.sha256)
    store.set_legal_hold(ref.sha256, False)
    assert store.delete(ref.sha256) is True


def test_s3_objects_extend_retention_only_lengthens(store):
    deadline = _deadline(3)
    ref = store.put_bytes(b"hold lifted later", retain_until=deadline)
    assert store.extend_retention(ref.sha256, deadline + DAY) == 1
    assert store.lock_status(ref.sha256).retain_until == deadline + DAY
    assert store.extend_retention(ref.sha256, deadline) == 0
    assert store.lock_status(ref.sha256).retain_until == deadline + DAY
    store.delete(ref.sha256)


# -- refused at open -----------------------------------------------------------------------------

def test_s3_objects_bucket_without_object_lock_refused_at_open(ceph_rgw, s3_bucket):
    bucket = ceph_rgw.create_bucket(object_lock=False, versioning=True)
    with pytest.raises(S3Error, match=f"bucket {bucket} cannot hold evidence: Object Lock is not enabled$") as exc:
        S3Objects(f"s3://{bucket}/x")
    _one_line(exc)


def test_s3_objects_bucket_without_versioning_refused_at_open(ceph_rgw, s3_bucket):
    bucket = ceph_rgw.create_bucket(object_lock=False, versioning=False)
    with pytest.raises(S3Error, match="versioning is off and Object Lock is not enabled") as exc:
        S3Objects(f"s3://{bucket}/x")
    _one_line(exc)


def test_s3_objects_missing_bucket_refused_at_open(s3_bucket):
    with pytest.raises(S3Error, match="bucket no-such-bucket-here does not exist") as exc:
        S3Objects("s3://no-such-bucket-here/x")
    _one_line(exc)


@pytest.mark.parametrize("which, code", [("access", "InvalidAccessKeyId"), ("secret", "SignatureDoesNotMatch")])
def test_s3_objects_wrong_credentials_refused_at_open(s3_bucket, monkeypatch, which, code):
    if which == "access":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOSUCHKEY0000000000")
    else:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-" + "x" * 27)
    with pytest.raises(S3Error, match=rf"refused the credentials \({code}\)") as exc:
        S3Objects(f"s3://{s3_bucket}/x")
    _one_line(exc)


def test_s3_objects_other_users_bucket_denied_at_open(ceph_rgw, s3_bucket, monkeypatch):
    access, secret = ceph_rgw.create_user(f"stranger-{os.urandom(3).hex()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", access)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with pytest.raises(S3Error, match=f"denied check bucket versioning in bucket {s3_bucket}") as exc:
        S3Objects(f"s3://{s3_bucket}/x")
    _one_line(exc)


def test_s3_objects_unreachable_endpoint_refused_at_open(s3_bucket, monkeypatch):
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(S3Error, match=f"cannot reach the S3 endpoint at {endpoint}") as exc:
        S3Objects(f"s3://{s3_bucket}/x")
    _one_line(exc)


def test_s3_objects_no_credentials_refused_at_open(s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(S3Error, match="no usable S3 credentials") as exc:
        S3Objects(f"s3://{s3_bucket}/x")
    _one_line(exc)


def test_s3_objects_credentials_from_shared_files(ceph_rgw, s3_bucket, monkeypatch, tmp_path):
    (tmp_path / "credentials").write_text(f"[city]\naws_access_key_id = {ceph_rgw.access_key}\n"
                                          f"aws_secret_access_key = {ceph_rgw.secret_key}\n")
    (tmp_path / "config").write_text(f"[profile city]\nendpoint_url = {ceph_rgw.endpoint}\nregion = default\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "city")
    store = S3Objects(f"s3://{s3_bucket}/x")
    assert store.read(store.put_bytes(b"via profile", retain_until=_deadline()).sha256) == b"via profile"


# -- checks --------------------------------------------------------------------------------------

def test_s3_objects_new_version_with_other_bytes_detected_as_altered(store, ceph_rgw):
    data = os.urandom(4096)
    deadline = _deadline()
    ref = store.put_bytes(data, retain_until=deadline)
    forged = bytes([data[0] ^ 1]) + data[1:]
    # A forger with write access adds a same-sized version that even claims the right SHA-256.
    ceph_rgw.client().put_object(Bucket=store.bucket, Key=store.key(ref.sha256), Body=forged,
                                 Metadata={"sha256": ref.sha256}, ObjectLockMode="GOVERNANCE",
                                 ObjectLockRetainUntilDate=deadline)
    assert store.check(ref.sha256, len(data), quick=True, deadline=deadline) == []  # quick trusts the record
    faults = store.check(ref.sha256, len(data), deadline=deadline)
    assert [f.kind for f in faults] == [OBJECT_ALTERED]
    assert "was altered (its bytes hash to" in str(faults[0]) and "older, locked version" in faults[0].hint
    store.delete(ref.sha256)


def test_s3_objects_truncated_version_detected_by_quick_check(store, ceph_rgw):
    data = os.urandom(4096)
    ref = store.put_bytes(data, retain_until=_deadline())
    ceph_rgw.client().put_object(Bucket=store.bucket, Key=store.key(ref.sha256), Body=data[:100])
    faults = store.check(ref.sha256, len(data), quick=True)
    assert OBJECT_ALTERED in [f.kind for f in faults]
    assert "has 100 bytes, the index says 4096" in str(faults[0])
    store.delete(ref.sha256)


def test_s3_objects_missing_object_detected(store):
    ref = store.put_bytes(b"soon gone", retain_until=_deadline())
    store.delete(ref.sha256)
    assert [f.kind for f in store.check(ref.sha256, 9)] == [OBJECT_MISSING]
    assert [f.kind for f in store.check(ref.sha256, 9, quick=True)] == [OBJECT_MISSING]


def test_s3_objects_unlocked_object_detected(store, ceph_rgw):
    data = b"written around the store"
    sha = hashlib.sha256(data).hexdigest()
    ceph_rgw.client().put_object(Bucket=store.bucket, Key=store.key(sha), Body=data, Metadata={"sha256": sha})
    faults = store.check(sha, len(data))
    assert [f.kind for f in faults] == [OBJECT_UNLOCKED]
    assert "no retention in force and no legal hold" in str(faults[0])
    store.delete(sha)


def test_s3_objects_retention_before_deadline_detected_as_unlocked(store):
    deadline = _deadline()
    ref = store.put_bytes(b"short lock", retain_until=deadline - DAY)
    faults = store.check(ref.sha256, 10, deadline=deadline)
    assert [f.kind for f in faults] == [OBJECT_UNLOCKED] and "before its deadline" in str(faults[0])
    store.delete(ref.sha256)


def test_s3_objects_held_clip_without_legal_hold_detected_as_unlocked(store):
    ref = store.put_bytes(b"held clip", retain_until=_deadline())
    assert [f.kind for f in store.check(ref.sha256, 9, held=True)] == [OBJECT_UNLOCKED]
    store.set_legal_hold(ref.sha256, True)
    assert store.check(ref.sha256, 9, held=True) == []
    store.set_legal_hold(ref.sha256, False)
    store.delete(ref.sha256)


def test_s3_objects_check_many_lists_faults_in_order(store):
    good = store.put_bytes(b"good", retain_until=_deadline())
    gone = store.put_bytes(b"gone", retain_until=_deadline())
    store.delete(gone.sha256)
    faults = store.check_many([LockTarget(gone.sha256, 4), LockTarget(good.sha256, 4)], quick=True)
    assert [(f.kind, f.sha256) for f in faults] == [(OBJECT_MISSING, gone.sha256)]
    store.delete(good.sha256)


# -- the documented permission model -------------------------------------------------------------

def _documented_policy() -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "CENTRAL.md").read_text()
    return text.split("```json\n", 1)[1].split("```", 1)[0]


def test_s3_objects_documented_policy_bypass_only_for_deletion_role(ceph_rgw, s3_bucket, monkeypatch):
    tag = os.urandom(3).hex()
    keys = {role: ceph_rgw.create_user(f"bodycam-{role}-{tag}") for role in ("dock", "officer", "expiry")}
    policy = _documented_policy().replace("arn:aws:s3:::BUCKET", f"arn:aws:s3:::{s3_bucket}")
    for role in keys:
        policy = policy.replace(f"user/bodycam-{role}\"", f"user/bodycam-{role}-{tag}\"")
    json.loads(policy)
    ceph_rgw.client().put_bucket_policy(Bucket=s3_bucket, Policy=policy)  # as the bucket's owner

    def as_user(role: str) -> S3Objects:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys[role][0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys[role][1])
        return S3Objects(f"s3://{s3_bucket}/city-a")

    dock, officer, expiry = as_user("dock"), as_user("officer"), as_user("expiry")
    ref = dock.put_bytes(b"segment from a dock", retain_until=_deadline(1))
    assert dock.extend_retention(ref.sha256, _deadline()) == 1  # what the ingest does before it commits
    assert dock.check(ref.sha256, 19, deadline=_deadline()) == []
    for who in (dock, officer):
        with pytest.raises(S3Error, match="refused to delete|denied") as exc:
            who.delete(ref.sha256)
        _one_line(exc)
    with pytest.raises(S3Error, match="denied set the legal hold"):
        dock.set_legal_hold(ref.sha256, True)
    officer.set_legal_hold(ref.sha256, True)
    with pytest.raises(S3Error, match="denied set the legal hold"):
        expiry.set_legal_hold(ref.sha256, False)
    with pytest.raises(S3Error, match="refused to delete 1 object version"):
        expiry.delete(ref.sha256)
    officer.set_legal_hold(ref.sha256, False)
    assert expiry.delete(ref.sha256) is True
    assert not officer.exists(ref.sha256)
