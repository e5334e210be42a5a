"""Hostile and failing media: each case gets a clear log line and a non-zero result, the store is
never corrupted, and a clip is quarantined only for a content failure (never for an I/O error)."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat

import pytest

import dock._copy
from dock.errors import DockError
from dock.ingest import OUT_QUARANTINED, OUT_SKIPPED, OUT_STORED
from evidence_store.clip import canonical
from evidence_store.clip.devkey import MANIFEST_CONTEXT, DeviceKey, b64
from evidence_store.clip.manifest import MAX_MANIFEST_BYTES
from evidence_store.store import Store
from tests.dock.helpers import assert_cleared, assert_store_sound, outbox_clip_names, stored_clips


def _quarantined(ingester, camera, store, store_root, caplog, clip, *reason_parts):
    """Ingest; the clip must be quarantined (with the reason logged), receipted and cleared."""
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert not report.ok
    result = {c.clip_id: c for c in report.clips}[clip.clip_id]
    assert result.outcome == OUT_QUARANTINED, result
    for part in reason_parts:
        assert part in result.reason
        assert part in caplog.text
    assert_cleared(camera.outbox, [clip], store.verifier_key, status="quarantined")
    assert clip.clip_id not in stored_clips(store_root)
    assert_store_sound(store_root)
    return report


def _resign(clip, key: DeviceKey, **changes) -> None:
    """Rewrite a clip's manifest with changed fields, signed by ``key`` (bypassing validation)."""
    outer = canonical.loads(clip.manifest_bytes, "manifest")
    body = outer["manifest"] | changes
    data = canonical.dumps({"manifest": body, "signature": b64(key.sign(MANIFEST_CONTEXT, canonical.dumps(body)))})
    (clip.folder / "manifest").write_bytes(data)
    clip.manifest_bytes = data


def test_hostile_clip_folder_name_not_a_clip_id_refused(camera, ingester, caplog):
    good = camera.clip()
    (camera.outbox.root / "clips" / "evil..name").mkdir()
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert not report.ok and report.rejected[0][0] == "evil..name"
    assert "evil..name" in caplog.text
    assert report.clips[0].clip_id == good.clip_id and report.clips[0].outcome == OUT_STORED


def test_hostile_segment_name_escaping_folder_quarantined(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    outer = canonical.loads(clip.manifest_bytes, "manifest")
    segs = outer["manifest"]["segments"]
    segs[0]["name"] = "../../../etc/passwd"
    _resign(clip, camera.device.key, segments=segs)
    _quarantined(ingester, camera, store, store_root, caplog, clip, "bad or repeated segment name")


def test_hostile_segment_symlink_quarantined_target_untouched(camera, ingester, store, store_root, caplog, tmp_path):
    clip = camera.clip()
    secret = tmp_path / "secret"
    secret.write_bytes(b"dock secret")
    name = next(iter(clip.segments))
    (clip.folder / name).unlink()
    (clip.folder / name).symlink_to(secret)
    _quarantined(ingester, camera, store, store_root, caplog, clip, "symbolic link")
    assert secret.read_bytes() == b"dock secret"
    with_secret = [p for p in (store_root / "objects").rglob("*") if p.is_file() and p.read_bytes() == b"dock secret"]
    assert with_secret == []  # never followed, never copied


def test_hostile_manifest_symlink_quarantined(camera, ingester, store, store_root, caplog, tmp_path):
    clip = camera.clip()
    (clip.folder / "manifest").unlink()
    (clip.folder / "manifest").symlink_to(tmp_path / "elsewhere")
    clip.manifest_bytes = b""
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert report.clips[0].outcome == OUT_QUARANTINED and "symbolic link" in report.clips[0].reason
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_hostile_segment_fifo_quarantined_without_hanging(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    name = next(iter(clip.segments))
    (clip.folder / name).unlink()
    os.mkfifo(clip.folder / name)
    _quarantined(ingester, camera, store, store_root, caplog, clip, "not a regular file")


def test_hostile_segment_device_file_quarantined(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    name = next(iter(clip.segments))
    (clip.folder / name).unlink()
    try:
        os.mknod(clip.folder / name, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD (run as root)")
    _quarantined(ingester, camera, store, store_root, caplog, clip, "not a regular file")


def test_hostile_segment_larger_than_manifest_quarantined(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    name = next(iter(clip.segments))
    with open(clip.folder / name, "ab") as f:
        f.write(b"\0" * 4096)
    _quarantined(ingester, camera, store, store_root, caplog, clip, "larger than the")


def test_hostile_segment_altered_quarantined_bytes_kept(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    name = next(iter(clip.segments))
    data = bytearray(clip.segments[name])
    data[len(data) // 2] ^= 1
    (clip.folder / name).write_bytes(bytes(data))
    _quarantined(ingester, camera, store, store_root, caplog, clip, "SHA-256 differs")
    import hashlib

    kept = store_root / "objects" / hashlib.sha256(data).hexdigest()[:2] / hashlib.sha256(data).hexdigest()
    assert kept.read_bytes() == bytes(data)  # kept under its content hash


def test_hostile_journal_tampered_quarantined(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    lines = clip.journal_bytes.split(b"\n")
    (clip.folder / "journal").write_bytes(b"\n".join(lines[:1] + lines[2:]))  # a line removed
    _quarantined(ingester, camera, store, store_root, caplog, clip, "journal")


def test_hostile_manifest_signed_by_other_key_quarantined(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    _resign(clip, DeviceKey.generate(), officer="somebody else")
    _quarantined(ingester, camera, store, store_root, caplog, clip, "manifest signature")


def test_hostile_manifest_of_gigabytes_refused_unread(camera, ingester, store, store_root, caplog):
    clip = camera.clip()
    with open(clip.folder / "manifest", "r+b") as f:
        f.truncate(3 * 2**30)  # sparse: the dock must refuse it by its size, not read it
    clip.manifest_bytes = b""
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert report.clips[0].outcome == OUT_QUARANTINED
    assert f"more than the {MAX_MANIFEST_BYTES} allowed" in report.clips[0].reason
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_hostile_device_json_symlink_not_followed_camera_known_by_its_signed_clips(camera, ingester, tmp_path, caplog):
    clip = camera.clip()
    target = tmp_path / "device.json"
    shutil.copy(camera.outbox.root / "device.json", target)
    (camera.outbox.root / "device.json").unlink()
    (camera.outbox.root / "device.json").symlink_to(target)
    (camera.outbox.root / "enrollment").unlink()  # nothing store-signed names the camera either
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert "symbolic link" in caplog.text
    assert report.device_id == camera.device_id and [c.outcome for c in report.clips] == [OUT_STORED]
    assert clip.clip_id not in outbox_clip_names(camera.outbox)


def test_hostile_device_json_symlink_and_nothing_signed_refused(camera, ingester, tmp_path):
    target = tmp_path / "device.json"
    shutil.copy(camera.outbox.root / "device.json", target)
    (camera.outbox.root / "device.json").unlink()
    (camera.outbox.root / "device.json").symlink_to(target)
    (camera.outbox.root / "enrollment").unlink()
    with pytest.raises(DockError, match="symbolic link"):
        ingester.ingest(camera.outbox.root)


def test_hostile_segment_changed_during_copy_left_on_camera(camera, make_ingester, store_root, caplog):
    clip = camera.clip()
    name = next(iter(clip.segments))

    def touch(done, total, label):
        os.utime(clip.folder / name, ns=(1, 1))  # same size, other mtime: not the file we started with

    with caplog.at_level(logging.WARNING):
        report = make_ingester(progress=touch).ingest(camera.outbox.root)
    assert not report.ok and report.clips[0].outcome == OUT_SKIPPED
    assert "changed during ingest" in report.clips[0].reason and "changed during ingest" in caplog.text
    assert outbox_clip_names(camera.outbox) == [clip.clip_id] and camera.outbox.receipt_ids() == []
    assert_store_sound(store_root)
    assert make_ingester().ingest(camera.outbox.root).ok  # a calm rerun stores it


def test_hostile_segment_growing_during_copy_left_on_camera(camera, make_ingester, store_root):
    clip = camera.clip()
    name = next(iter(clip.segments))
    grown = []

    def grow(done, total, label):
        if not grown:
            grown.append(1)
            with open(clip.folder / name, "ab") as f:
                f.write(b"x" * (2 << 20))

    report = make_ingester(progress=grow).ingest(camera.outbox.root)
    assert report.clips[0].outcome == OUT_SKIPPED and "changed during ingest" in report.clips[0].reason
    assert_store_sound(store_root)


def test_hostile_io_error_mid_read_clip_and_later_ones_left_then_stored_without_gap(camera, ingester, store_root,
                                                                                    monkeypatch, caplog):
    bad, later = camera.clip(), camera.clip()
    real_read = dock._copy.os.read
    calls = []

    def failing_read(fd, n):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error")
        return real_read(fd, n)

    monkeypatch.setattr(dock._copy.os, "read", failing_read)
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    outcomes = {c.clip_id: c.outcome for c in report.clips}
    # The later clip waits: storing it would record the unread one as a gap, and the genuine clip
    # would then be refused as a replay at the next docking.
    assert outcomes == {bad.clip_id: OUT_SKIPPED, later.clip_id: OUT_SKIPPED}
    assert not report.ok and "Input/output error" in caplog.text
    assert "waits for clip" in report.clips[1].reason
    assert outbox_clip_names(camera.outbox) == sorted([bad.clip_id, later.clip_id])  # never quarantined for an I/O error
    monkeypatch.setattr(dock._copy.os, "read", real_read)
    again = ingester.ingest(camera.outbox.root)
    assert again.ok and [c.outcome for c in again.clips] == [OUT_STORED, OUT_STORED]
    with Store.open(store_root) as s:
        assert [e for e in s.events() if e["kind"] in ("gap", "quarantine")] == []
    assert_store_sound(store_root)


def test_hostile_camera_unplugged_mid_copy_stops_then_rerun_completes(camera, make_ingester, store, store_root, tmp_path,
                                                                       caplog, monkeypatch):
    clips = [camera.clip() for _ in range(3)]
    away = tmp_path / "unplugged"

    def unplug(done, total, label):
        if camera.outbox.root.exists():
            camera.outbox.root.rename(away)  # the mount is gone: every path now fails with ENOENT

    real_read = dock._copy.os.read

    def read(fd, n):
        if not camera.outbox.root.exists():
            raise OSError(errno.EIO, "Input/output error")
        return real_read(fd, n)

    with monkeypatch.context() as mp:
        mp.setattr(dock._copy.os, "read", read)
        with caplog.at_level(logging.WARNING):
            report = make_ingester(progress=unplug).ingest(camera.outbox.root)
    assert not report.ok and any("went away" in e for e in report.errors)
    assert [c.outcome for c in report.clips] == [OUT_SKIPPED] * 3
    assert stored_clips(store_root) == {}
    assert_store_sound(store_root)
    away.rename(camera.outbox.root)  # docked again
    assert make_ingester().ingest(camera.outbox.root).ok
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_cleared(camera.outbox, clips, store.verifier_key)


@pytest.mark.parametrize("damage", ["emptied", "last-newline-flipped"])
def test_hostile_journal_truncated_for_sealed_clip_quarantined(camera, ingester, store_root, damage):
    # A journal cut short on the camera would make a sealed, whole segment look "cut after a
    # crash" in the store; the signed manifest says otherwise, so the clip is quarantined.
    clip = camera.clip()
    journal = clip.folder / "journal"
    data = journal.read_bytes()
    journal.write_bytes(b"" if damage == "emptied" else data[:-1] + b"x")
    report = ingester.ingest(camera.outbox.root)
    (result,) = report.clips
    assert result.outcome == OUT_QUARANTINED and "journal altered" in result.reason
    assert stored_clips(store_root) == {}
    assert_store_sound(store_root)


@pytest.mark.parametrize("linked", ["clips", "receipts"])
def test_hostile_outbox_subfolder_linked_to_another_camera_refused_untouched(store, camera, ingester, store_root, tmp_path,
                                                                             linked):
    # Camera B's mount point is predictable; camera A's partition must not reach into it.
    from tests.dock.conftest import new_camera

    other = new_camera(store, tmp_path / "cam-b-outbox", "cam-b")
    victim = other.clip()
    attacker_sub = camera.outbox.root / linked
    shutil.rmtree(attacker_sub)
    attacker_sub.symlink_to(other.outbox.root / linked)
    if linked == "receipts":
        camera.clip()
    with pytest.raises(DockError, match="symbolic link"):
        ingester.ingest(camera.outbox.root)
    assert outbox_clip_names(other.outbox) == [victim.clip_id]
    assert list((other.outbox.root / "receipts").iterdir()) == []
    assert stored_clips(store_root) == {}


@pytest.mark.parametrize("changes", [{"homes": "yes"}, {"sequence": True}, {"bookmarks": "2026"}, {"notes": [1]},
                                     {"duration_override": None}])
def test_hostile_signed_manifest_with_wrong_field_type_quarantined_not_crash(camera, ingester, store_root, changes):
    # Signed by the enrolled key, yet malformed: a buggy or compromised camera must not stop the
    # dock (a traceback here would leave the camera uncleared at every docking).
    clip = camera.clip()
    if "duration_override" in changes:
        segs = [dict(s, duration_ms=-1) for s in json_segments(clip)]
        _resign(clip, camera.device.key, segments=segs)
    else:
        _resign(clip, camera.device.key, **changes)
    report = ingester.ingest(camera.outbox.root)
    (result,) = report.clips
    assert result.outcome == OUT_QUARANTINED and "manifest" in result.reason
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def json_segments(clip):
    return canonical.loads((clip.folder / "manifest").read_bytes(), "m")["manifest"]["segments"]
