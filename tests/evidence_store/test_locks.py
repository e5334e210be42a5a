"""The law mapped onto S3 Object Lock (store/locks.py), against a real Ceph RGW.

A store with its objects in a fresh Object Lock bucket (index in SQLite: the lock does not depend
on it) and a clock at the real time, because the storage enforces retention by its own clock.
Raw boto3 calls play the other parties: an ordinary S3 user trying to delete early, a storage
admin shortening a lock with the bypass right.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store import verify as v
from evidence_store.cli import main
from evidence_store.clip.ids import parse_time
from evidence_store.clip.manifest import manifest_hash
from evidence_store.deletion import approve_deletion, request_deletion
from evidence_store.objects import OBJECTS_KEY
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.clock import FakeClock
from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N, put_and_ingest
from tests.servers._process import free_port

boto3 = pytest.importorskip("boto3", reason="boto3 is in the 'test' and 'central' extras")
from botocore.exceptions import ClientError  # noqa: E402

from evidence_store.objects_s3 import ARRIVAL_RETENTION, LOCK_MODE, S3Error  # noqa: E402


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def s3_url(s3_bucket):
    return f"s3://{s3_bucket}/city-a"


@pytest.fixture
def clock():
    return FakeClock(_now())


@pytest.fixture
def store(tmp_path, s3_url, clock):
    s = Store.init(tmp_path / "store", PASSPHRASE, scrypt_log_n=TEST_LOG_N, clock=clock, actor="officer-a",
                   objects=s3_url)
    yield s
    s.close()


@pytest.fixture
def camera(store):
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    return cam


@pytest.fixture
def add_clip(store, camera, tmp_path, clock):
    def add(age: timedelta = timedelta(hours=1), **kwargs):
        clip = make_clip(tmp_path / "outbox", camera, store.recipients, started_at=clock.now() - age, **kwargs)
        put_and_ingest(store, clip)
        return clip

    return add


def _hashes(store, clip_id: str) -> list[str]:
    hashes, _, _ = store.item_objects(clip_id)
    assert len(hashes) >= 3  # manifest, journal, segment(s)
    return hashes


def _versions(store, sha: str) -> list[dict]:
    """Every version of the object's key, with its lock, as the storage reports it."""
    objects, key = store.objects, store.objects.key(sha)
    listed = objects.client.list_object_versions(Bucket=objects.bucket, Prefix=key)
    out = []
    for version in listed.get("Versions", []):
        head = objects.client.head_object(Bucket=objects.bucket, Key=key, VersionId=version["VersionId"])
        out.append({"until": head.get("ObjectLockRetainUntilDate"), "mode": head.get("ObjectLockMode"),
                    "hold": head.get("ObjectLockLegalHoldStatus") == "ON"})
    return out + [{"marker": True} for _ in listed.get("DeleteMarkers", [])]


def _deadline(store, clip_id: str) -> datetime:
    return parse_time(store.clip(clip_id).deadline)


# -- retention = the deadline ------------------------------------------------------------------------


def test_locks_ingest_retention_date_equals_clip_deadline(store, add_clip):
    clip = add_clip(age=timedelta(days=3))
    deadline = _deadline(store, clip.clip_id)
    assert deadline - _now() > timedelta(days=10)  # far beyond the arrival retention
    for sha in _hashes(store, clip.clip_id):
        (version,) = _versions(store, sha)
        assert version == {"until": deadline, "mode": LOCK_MODE, "hold": False}
    assert v.verify_store(store) == []


def test_locks_object_before_ingest_has_short_arrival_retention(store):
    ref = store.put_object(io.BytesIO(b"a segment whose clip is not yet checked"), 100)
    (version,) = _versions(store, ref.sha256)
    assert version["mode"] == LOCK_MODE
    assert abs(version["until"] - (_now() + ARRIVAL_RETENTION)) < timedelta(minutes=2)


def test_locks_ingest_rerun_new_version_locked_to_deadline(store, add_clip, camera, tmp_path):
    clip = add_clip()
    again = put_and_ingest(store, clip)  # the dock died before its receipt and copies again
    assert again.already
    deadline = _deadline(store, clip.clip_id)
    for sha in _hashes(store, clip.clip_id):
        versions = _versions(store, sha)
        assert len(versions) == 2 and all(x["until"] == deadline for x in versions)


def test_locks_extension_refused_ingest_not_committed_nothing_stored(store, camera, tmp_path, monkeypatch):
    clip = make_clip(tmp_path / "outbox", camera, store.recipients, started_at=store.now() - timedelta(hours=1))
    size = store.log.size()

    def refuse(sha, until):
        raise S3Error("the S3 storage denied extend the retention (AccessDenied)")

    monkeypatch.setattr(store.objects, "extend_retention", refuse)
    with pytest.raises(S3Error):
        put_and_ingest(store, clip)
    assert store.log.size() == size and store.manifest_status(manifest_hash(clip.manifest_bytes)) is None
    assert store.clips() == []  # the dock leaves the clip on the camera


def test_locks_quarantined_objects_retained_until_their_deadline(store, clock):
    ref = store.put_object(io.BytesIO(b"a file nobody signed"), 100)
    qid = store.quarantine(reason="not named by any manifest", device_id="cam-07", clip_id=None,
                           manifest_bytes=None, journal_bytes=None, objects={"stray.ts": ref})
    deadline = _deadline(store, qid)
    assert deadline == clock.now() + timedelta(days=14)
    (version,) = _versions(store, ref.sha256)
    assert version["until"] == deadline
    assert v.verify_store(store) == []


# -- hold = legal hold -----------------------------------------------------------------------------


def test_locks_hold_sets_legal_hold_last_release_clears_it(store, add_clip):
    clip = add_clip()
    store.hold(clip.clip_id, case="A-1", reason="evidence")
    store.hold(clip.clip_id, case="B-2", reason="subject asked", kind="subject-request")
    assert all(x["hold"] for sha in _hashes(store, clip.clip_id) for x in _versions(store, sha))
    store.release(clip.clip_id, case="A-1", reason="case closed")
    assert all(x["hold"] for sha in _hashes(store, clip.clip_id) for x in _versions(store, sha))
    assert v.verify_store(store) == []
    store.release(clip.clip_id, case="B-2", reason="reviewed")
    deadline = _deadline(store, clip.clip_id)
    for sha in _hashes(store, clip.clip_id):
        assert _versions(store, sha) == [{"until": deadline, "mode": LOCK_MODE, "hold": False}]
    assert v.verify_store(store) == []


def test_locks_release_after_deadline_keeps_object_locked_until_expiry(store, add_clip, clock):
    clip = add_clip()
    hashes = _hashes(store, clip.clip_id)
    store.hold(clip.clip_id, case="A-1", reason="evidence")
    clock.advance(days=20)  # the store's clock: the deadline passed while held
    store.release(clip.clip_id, case="A-1", reason="case closed")
    for sha in hashes:
        (version,) = _versions(store, sha)
        assert not version["hold"] and version["until"] > _now()  # never unlocked before expiry runs
    store.expire()
    assert all(_versions(store, sha) == [] for sha in hashes)


def test_locks_held_clip_not_deletable_even_with_bypass(store, add_clip):
    clip = add_clip()
    store.hold(clip.clip_id, case="A-1", reason="evidence")
    sha = _hashes(store, clip.clip_id)[0]
    objects = store.objects
    version = objects.client.list_object_versions(Bucket=objects.bucket, Prefix=objects.key(sha))["Versions"][0]
    with pytest.raises(ClientError):
        objects.client.delete_object(Bucket=objects.bucket, Key=objects.key(sha), VersionId=version["VersionId"],
                                     BypassGovernanceRetention=True)


# -- deletion: expiry and the four-eyes approval, with the bypass -----------------------------------


def test_locks_expiry_deletes_every_version_once_due(store, add_clip, clock):
    clip = add_clip()
    put_and_ingest(store, clip)  # a second, equally locked version of every object
    hashes = _hashes(store, clip.clip_id)
    assert all(len(_versions(store, sha)) == 2 for sha in hashes)
    clock.advance(days=14)
    result = store.expire()
    assert result.deleted_objects == len(hashes)
    assert all(_versions(store, sha) == [] for sha in hashes)
    assert store.clip(clip.clip_id).state == "expired"
    assert v.verify_store(store) == []


def test_locks_ordinary_delete_refused_early_deletion_bypasses(store, add_clip):
    clip = add_clip()
    hashes = _hashes(store, clip.clip_id)
    objects = store.objects
    key = objects.key(hashes[0])
    version = objects.client.list_object_versions(Bucket=objects.bucket, Prefix=key)["Versions"][0]["VersionId"]
    with pytest.raises(ClientError):  # an S3 user without the bypass: the recording stays
        objects.client.delete_object(Bucket=objects.bucket, Key=key, VersionId=version)
    request = request_deletion(store, clip.clip_id, reason="§ 53 StPO place")
    store.actor = "officer-b"
    done = approve_deletion(store, request.request_id, reason="agreed")
    assert done.objects_removed == len(hashes)
    assert all(_versions(store, sha) == [] for sha in hashes)
    kinds = [e["kind"] for e in store.events(clip_id=clip.clip_id)]
    assert kinds[-2:] == ["delete-approve", "expire"]  # the log is the evidence of the deletion
    assert v.verify_store(store) == []


# -- verify: unlocked objects are named ----------------------------------------------------------------


def test_locks_verify_names_shortened_retention_and_apply_lock_repairs(store, add_clip):
    clip = add_clip()
    sha = _hashes(store, clip.clip_id)[0]
    objects = store.objects
    key = objects.key(sha)
    version = objects.client.list_object_versions(Bucket=objects.bucket, Prefix=key)["Versions"][0]["VersionId"]
    objects.client.put_object_retention(Bucket=objects.bucket, Key=key, VersionId=version, BypassGovernanceRetention=True,
                                        Retention={"Mode": LOCK_MODE, "RetainUntilDate": _now() + timedelta(days=1)})
    (fault,) = v.verify_store(store)
    assert (fault.kind, fault.where) == (v.OBJECT_UNLOCKED, f"clip {clip.clip_id}")
    assert sha in fault.message and "before its deadline" in fault.message
    assert store.apply_lock(clip.clip_id) >= 1
    assert v.verify_store(store) == []


def test_locks_verify_names_held_clip_without_legal_hold(store, add_clip):
    clip = add_clip()
    store.hold(clip.clip_id, case="A-1", reason="evidence")
    sha = _hashes(store, clip.clip_id)[-1]
    store.objects.set_legal_hold(sha, False)
    faults = v.verify_store(store, quick=True)
    assert [(f.kind, f.where) for f in faults] == [(v.OBJECT_UNLOCKED, f"clip {clip.clip_id}")]
    assert "legal hold is off" in faults[0].message
    store.apply_lock(clip.clip_id)
    assert v.verify_store(store) == []


def test_locks_verify_quick_trusts_recorded_hash_and_says_so(store, add_clip, capsys):
    add_clip()
    assert main(["--store", str(store.root), "verify", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "quick: objects were not re-read" in out and "ok:" in out


# -- init ------------------------------------------------------------------------------------------


def test_locks_init_objects_recorded_in_store_json_and_config_event(tmp_path, s3_url, capsys, monkeypatch):
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(_passphrase(tmp_path)))
    root = tmp_path / "store"
    assert main(["--store", str(root), "init", "--objects", s3_url]) == 0
    assert f"objects: {s3_url}" in capsys.readouterr().out
    config = json.loads((root / "store.json").read_text())
    assert config[OBJECTS_KEY] == s3_url and not (root / "objects").exists()
    with Store.open(root) as store:
        assert store.objects.locking and v.verify_store(store) == []


def test_locks_init_store_json_pointed_elsewhere_is_config_fault(tmp_path, s3_url, ceph_rgw, capsys, monkeypatch):
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(_passphrase(tmp_path)))
    root = tmp_path / "store"
    assert main(["--store", str(root), "init", "--objects", s3_url]) == 0
    config = json.loads((root / "store.json").read_text())
    config[OBJECTS_KEY] = f"s3://{ceph_rgw.create_bucket()}/elsewhere"
    (root / "store.json").chmod(0o644)
    (root / "store.json").write_text(json.dumps(config, indent=2) + "\n")
    capsys.readouterr()
    assert main(["--store", str(root), "verify"]) == 3
    assert "FAULT config-mismatch" in capsys.readouterr().out


def _passphrase(tmp_path):
    path = tmp_path / "passphrase"
    path.write_bytes(PASSPHRASE)
    return path


@pytest.mark.parametrize("problem", ["no object lock", "no bucket", "wrong secret", "unreachable"])
def test_locks_init_unfit_bucket_one_line_exit_1_nothing_created(tmp_path, s3_bucket, ceph_rgw, capsys, monkeypatch,
                                                                 problem):
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(_passphrase(tmp_path)))
    bucket = s3_bucket
    if problem == "no object lock":
        bucket = ceph_rgw.create_bucket(object_lock=False, versioning=True)
    elif problem == "no bucket":
        bucket = "no-such-bucket-here"
    elif problem == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    root = tmp_path / "store"
    assert main(["--store", str(root), "init", "--objects", f"s3://{bucket}/city"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") <= 1 and err.startswith("bodycam-evidence: error:") and "Traceback" not in err
    expected = {"no object lock": "Object Lock is not enabled", "no bucket": "does not exist",
                "wrong secret": "refused the credentials", "unreachable": "cannot reach the S3 endpoint"}[problem]
    assert expected in err
    assert not root.exists()


def test_locks_open_with_wrong_credentials_one_line_exit_1(store, capsys, monkeypatch):
    root = store.root
    store.close()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    assert main(["--store", str(root), "list"]) == 1
    err = capsys.readouterr().err
    assert "refused the credentials" in err and "Traceback" not in err
