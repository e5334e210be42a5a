"""The dock deletes only what the store provably holds, knows a camera by what is signed, and one
planted file never blocks a camera (issue 13)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
from datetime import UTC

import pytest

from dock.ingest import OUT_ALREADY, OUT_QUARANTINED, OUT_STORED
from evidence_store.clip import canonical
from evidence_store.clip.devkey import MANIFEST_CONTEXT, b64
from evidence_store.clip.outbox import DeviceRecord
from evidence_store.store import Store
from tests.dock.conftest import new_camera
from tests.dock.helpers import assert_store_sound, outbox_clip_names, stored_clips


def _quarantined_files(store_root) -> dict[str, set[str]]:
    """claimed clip id -> SHA-256 of every object the quarantine keeps for it (files, manifest, journal)."""
    out: dict[str, set[str]] = {}
    with Store.open(store_root) as store:
        for qid, clip_id, m, j in store.conn.execute("SELECT qid, clip_id, manifest_sha256, journal_sha256 FROM quarantine"):
            held = out.setdefault(clip_id, set())
            held.update(h for h in (m, j) if h)
            held.update(r[0] for r in store.conn.execute("SELECT sha256 FROM quarantine_objects WHERE qid = ?", (qid,)))
    return out


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_trust_stored_manifest_copied_into_other_folder_genuine_segments_kept(camera, ingester, store_root):
    first = camera.clip()
    assert ingester.ingest(camera.outbox.root).ok
    second = camera.clip()
    # The attack: the stored clip's manifest replaces the second clip's own manifest.
    (second.folder / "manifest").write_bytes(first.manifest_bytes)
    report = ingester.ingest(camera.outbox.root)
    result = {c.clip_id: c for c in report.clips}[second.clip_id]
    assert result.outcome == OUT_QUARANTINED and "lies in folder" in result.reason
    assert second.clip_id not in outbox_clip_names(camera.outbox)
    # Every genuine byte of the second clip is in the store, under that clip's quarantine.
    kept = _quarantined_files(store_root)[second.clip_id]
    assert {_sha(b) for b in second.segments.values()} | {_sha(second.journal_bytes)} <= kept
    assert stored_clips(store_root) == {first.clip_id: first.manifest_sha256}
    assert_store_sound(store_root)


def test_trust_stored_clip_refilled_with_other_bytes_extra_bytes_quarantined_before_clearing(camera, ingester, store_root,
                                                                                             tmp_path):
    clip = camera.clip()
    keep = tmp_path / "keep"
    shutil.copytree(clip.folder, keep)
    assert ingester.ingest(camera.outbox.root).ok
    # The same folder comes back (kill before the clearing), with one segment replaced.
    shutil.copytree(keep, clip.folder)
    name = next(iter(clip.segments))
    (clip.folder / name).write_bytes(b"not what the store holds" * 100)
    report = ingester.ingest(camera.outbox.root)
    assert [c.outcome for c in report.clips] == [OUT_ALREADY]
    assert _sha(b"not what the store holds" * 100) in _quarantined_files(store_root)[clip.clip_id]
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_trust_subfolder_in_clip_folder_kept_not_deleted_unstored(camera, ingester, store_root):
    clip = camera.clip()
    sub = clip.folder / "more" / "deeper"
    sub.mkdir(parents=True)
    (sub / "seg-00009.age").write_bytes(b"a segment a buggy firmware put aside" * 10)
    report = ingester.ingest(camera.outbox.root)
    assert [c.outcome for c in report.clips] == [OUT_STORED] and report.clips[0].cleared
    assert "more/deeper/seg-00009.age" in report.clips[0].extra_files
    assert _sha(b"a segment a buggy firmware put aside" * 10) in _quarantined_files(store_root)[clip.clip_id]
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_trust_too_deep_subfolders_clip_named_left_on_camera_others_ingested(camera, ingester, store_root):
    bad = camera.clip()
    good = camera.clip()
    deep = bad.folder.joinpath(*["d"] * 10)
    deep.mkdir(parents=True)
    (deep / "x").write_bytes(b"x")
    report = ingester.ingest(camera.outbox.root)
    results = {c.clip_id: c for c in report.clips}
    assert results[good.clip_id].outcome == OUT_STORED and results[good.clip_id].cleared
    assert not results[bad.clip_id].cleared and "nested more than" in results[bad.clip_id].reason
    assert (deep / "x").read_bytes() == b"x"
    assert bad.clip_id in outbox_clip_names(camera.outbox)
    assert_store_sound(store_root)


def test_trust_non_utf8_name_socket_and_link_in_clip_folder_no_traceback(camera, ingester, store_root, tmp_path, caplog):
    clip = camera.clip()
    later = camera.clip()
    odd = os.fsdecode(b"caf\xe9-\xff.bin")
    (clip.folder / odd).write_bytes(b"latin-1 named")
    sock = socket.socket(socket.AF_UNIX)
    short = tmp_path / "s"
    sock.bind(str(short))
    os.rename(short, clip.folder / "a-socket")
    (clip.folder / "a-link").symlink_to("/etc/passwd")
    with caplog.at_level(logging.ERROR):
        report = ingester.ingest(camera.outbox.root)
    sock.close()
    assert "Traceback" not in caplog.text and "internal error" not in caplog.text
    assert [c.outcome for c in report.clips] == [OUT_STORED, OUT_STORED] and all(c.cleared for c in report.clips)
    assert "caf\\xe9-\\xff.bin" in report.clips[0].extra_files
    assert _sha(b"latin-1 named") in _quarantined_files(store_root)[clip.clip_id]
    assert later.clip_id in stored_clips(store_root)
    assert outbox_clip_names(camera.outbox) == []
    assert_store_sound(store_root)


def test_trust_file_changing_during_clearing_kept_then_next_docking_keeps_new_bytes(camera, make_ingester, store_root):
    clip = camera.clip()
    extra = clip.folder / "notes.txt"
    extra.write_bytes(b"first")

    def grow(step, clip_id):
        # Once after the commit (the clearing then keeps the new bytes), and again after that:
        # the second change comes after the last proof, just before the receipt.
        if step in ("ingested", "quarantined") and clip_id == clip.clip_id and extra.read_bytes().count(b"more") < 2:
            with open(extra, "ab") as f:
                f.write(b" and more")

    report = make_ingester(fault=grow).ingest(camera.outbox.root)
    # The clip is stored, but the folder is neither receipted nor cleared: its file changed
    # after it was proven held, and the camera would delete a receipted folder at undocking.
    assert report.clips[0].outcome == OUT_STORED and not report.clips[0].cleared
    assert "changed during ingest" in report.clips[0].reason
    assert extra.read_bytes() == b"first and more and more"
    assert camera.outbox.receipt(clip.clip_id, Store.open(store_root).verifier_key) is None
    again = make_ingester().ingest(camera.outbox.root)
    assert again.ok and [c.outcome for c in again.clips] == [OUT_ALREADY]
    kept = {_sha(b"first"), _sha(b"first and more"), _sha(b"first and more and more")}
    assert kept <= _quarantined_files(store_root)[clip.clip_id]
    assert_store_sound(store_root)


def _plant_device_json(camera, other) -> None:
    path = camera.outbox.root / "device.json"
    path.unlink()
    path.write_bytes(DeviceRecord(other.device_id, other.device.public_key).to_bytes())


def test_trust_other_cameras_device_json_planted_genuine_clips_stored(store, store_root, ingester, tmp_path):
    mine = new_camera(store, tmp_path / "a", "cam-a")
    other = new_camera(store, tmp_path / "b", "cam-b")
    clips = [mine.clip(), mine.clip()]
    _plant_device_json(mine, other)
    report = ingester.ingest(mine.outbox.root)
    assert report.device_id == "cam-a" and [c.outcome for c in report.clips] == [OUT_STORED, OUT_STORED]
    assert any("device.json names 'cam-b'" in n for n in report.notes)
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_store_sound(store_root)


def test_trust_planted_device_json_without_enrollment_known_by_clip_signatures(store, store_root, ingester, tmp_path):
    mine = new_camera(store, tmp_path / "a", "cam-a")
    other = new_camera(store, tmp_path / "b", "cam-b")
    mine.clip()
    _plant_device_json(mine, other)
    (mine.outbox.root / "enrollment").unlink()
    report = ingester.ingest(mine.outbox.root)
    assert report.device_id == "cam-a" and [c.outcome for c in report.clips] == [OUT_STORED]


def test_trust_planted_device_json_serial_wins(store, store_root, ingester, tmp_path):
    mine = new_camera(store, tmp_path / "a", "cam-a")
    other = new_camera(store, tmp_path / "b", "cam-b")
    mine.clip()
    _plant_device_json(mine, other)
    report = ingester.ingest(mine.outbox.root, expect_device="cam-a")
    assert report.ok and report.device_id == "cam-a"


@pytest.mark.parametrize("payload", [
    b'{"format":"bodycam-device/v1","device_id":"cam-07","public_key":"x","firmware":' + b"9" * 50000 + b"}",
    b"[" * 100000 + b"]" * 100000,
    b'{"format":"bodycam-device/v1","format":"bodycam-device/v1"}',
    b'{"format":NaN}',
    b"\xff\xfe not json",
])
def test_trust_hostile_device_json_never_blocks_camera(camera, ingester, store_root, payload, caplog):
    clip = camera.clip()
    (camera.outbox.root / "device.json").write_bytes(payload)
    with caplog.at_level(logging.WARNING):
        report = ingester.ingest(camera.outbox.root)
    assert report.ok and [c.clip_id for c in report.clips] == [clip.clip_id]
    assert "device.json" in caplog.text


def _resign_raw(clip, key, body_bytes: bytes) -> None:
    """A manifest whose body is ``body_bytes`` (not canonical JSON), validly signed."""
    sig = b64(key.sign(MANIFEST_CONTEXT, body_bytes))
    (clip.folder / "manifest").write_bytes(b'{"manifest":' + body_bytes + b',"signature":"' + sig.encode() + b'"}')


@pytest.mark.parametrize("mutate", ["huge-number", "deep-nesting", "date-only", "missing-notes"])
def test_trust_hostile_manifest_quarantined_later_clips_stored(camera, ingester, store_root, mutate):
    bad = camera.clip()
    later = camera.clip()
    body = canonical.loads(bad.manifest_bytes, "manifest")["manifest"]
    if mutate == "huge-number":
        raw = canonical.dumps(body).replace(b'"sequence":0', b'"sequence":' + b"9" * 5000)
    elif mutate == "deep-nesting":
        raw = canonical.dumps(body).replace(b'"bookmarks":[]', b'"bookmarks":' + b"[" * 5000 + b"]" * 5000)
    elif mutate == "date-only":
        raw = canonical.dumps(body | {"started_at": "2026-11-30Z"})
    else:
        raw = canonical.dumps({k: v for k, v in body.items() if k != "notes"})
    _resign_raw(bad, camera.device.key, raw)
    report = ingester.ingest(camera.outbox.root)
    results = {c.clip_id: c for c in report.clips}
    assert results[bad.clip_id].outcome == OUT_QUARANTINED and results[bad.clip_id].cleared
    assert "internal error" not in results[bad.clip_id].reason
    # The later clip is not held back (it becomes the chain's next after a recorded gap).
    assert results[later.clip_id].outcome in (OUT_STORED, OUT_QUARANTINED)
    assert results[later.clip_id].cleared
    kept = _quarantined_files(store_root)
    assert {_sha(b) for b in bad.segments.values()} <= kept[bad.clip_id]
    assert_store_sound(store_root)


def test_trust_hostile_journal_huge_number_quarantined(camera, ingester, store_root):
    clip = camera.clip()
    journal = clip.folder / "journal"
    data = journal.read_bytes().replace(b'"bytes":', b'"bytes":' + b"1" * 4000, 1)
    journal.write_bytes(data)
    report = ingester.ingest(camera.outbox.root)
    assert report.clips[0].outcome == OUT_QUARANTINED and "journal" in report.clips[0].reason
    assert report.clips[0].cleared and _sha(data) in _quarantined_files(store_root)[clip.clip_id]
    assert_store_sound(store_root)


def _quarantine_genuine(camera, ingester, store_root):
    """A genuine clip quarantined by mistake (another clip's manifest was planted in its folder)."""
    first = camera.clip()
    assert ingester.ingest(camera.outbox.root).ok
    genuine = camera.clip()
    (genuine.folder / "manifest").write_bytes(first.manifest_bytes)
    ingester.ingest(camera.outbox.root)
    with Store.open(store_root) as store:
        (qid,) = store.conn.execute("SELECT qid FROM quarantine WHERE clip_id = ?", (genuine.clip_id,)).fetchone()
    return genuine, qid


def test_trust_quarantined_genuine_clip_held_listed_exported_never_expires_unreviewed(camera, ingester, store_root, tmp_path,
                                                                                       capsys, monkeypatch):
    from datetime import datetime

    from evidence_store.cli import main

    genuine, qid = _quarantine_genuine(camera, ingester, store_root)
    store_arg = ["--store", str(store_root)]
    assert main(store_arg + ["hold", qid, "--case", "AZ-17", "--reason", "looks genuine; review"]) == 0
    capsys.readouterr()
    assert main(store_arg + ["list", "--json"]) == 0
    listed = {c["clip_id"]: c for c in __import__("json").loads(capsys.readouterr().out)["clips"]}
    assert "lies in folder" in listed[qid]["quarantine_reason"] and listed[qid]["holds"][0]["case"] == "AZ-17"
    assert main(store_arg + ["list", "--held", "--json"]) == 0
    assert [c["clip_id"] for c in __import__("json").loads(capsys.readouterr().out)["clips"]] == [qid]
    assert main(store_arg + ["show", qid]) == 0
    shown = capsys.readouterr().out
    assert "lies in folder" in shown and "AZ-17" in shown
    # Held: a preview years ahead deletes everything else that is due, never the held item.
    with Store.open(store_root) as store:
        due = store.expire(now=datetime(2099, 1, 1, tzinfo=UTC), dry_run=True).deleted
    assert qid not in {d.item_id for d in due}
    pw = tmp_path / "pw"
    pw.write_text("correct horse\n")
    out = tmp_path / "export"
    assert main(store_arg + ["export", qid, "--out", str(out), "--reason", "review of a rejected clip",
                             "--passphrase-file", str(pw)]) == 0
    assert "lies in folder" in (out / "QUARANTINE.txt").read_text()
    sheet = tmp_path / "sheet.png"
    assert main(store_arg + ["view", qid, "--reason", "is it genuine?", "--contact-sheet", str(sheet),
                             "--passphrase-file", str(pw)]) == 0
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plaintexts = sorted(p.read_bytes() for p in (out / "segments").glob("*.ts"))
    assert plaintexts == sorted(genuine.plaintext.values())  # the genuine video, decrypted
    with Store.open(store_root) as store:
        kinds = [e["kind"] for e in store.events(clip_id=qid)]
    assert kinds[:2] == ["quarantine", "hold"] and "export" in kinds and "view" in kinds
    assert_store_sound(store_root)
    assert main(store_arg + ["release", qid, "--case", "AZ-17", "--reason", "reviewed: a duplicate"]) == 0
    assert_store_sound(store_root)
