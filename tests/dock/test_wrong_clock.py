"""A camera clock that is wrong never costs a recording: a clip the device chain proves was made
after the previous docking counts its deadline from that docking, whatever time it claims; it is
flagged, never deleted at once as a late arrival, and ``verify`` checks the correction."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from dock.cli import main as dock_main
from evidence_store import cli as evidence_cli
from evidence_store.clip.ids import format_time
from evidence_store.retention import FLAG_START_CORRECTED
from evidence_store.store import Store
from evidence_store.verify import verify_store
from tests.clock import FakeClock
from tests.dock.helpers import assert_store_sound

YEAR_1 = datetime(1, 1, 1, 0, 0, 10, tzinfo=UTC)


def _ingest_event(store, clip_id: str) -> dict:
    return next(e for e in store.events(clip_id=clip_id) if e["kind"] == "ingest")


def test_wrong_clock_15_days_back_after_a_docking_kept_with_deadline_from_the_docking(
        camera, make_ingester, store_root, clock):
    assert make_ingester().ingest(camera.outbox.root).ok  # the previous docking
    docked = clock.now()
    clock.advance(hours=1)
    claimed = clock.now() - timedelta(days=15)
    clip = camera.clip(started_at=claimed)
    report = make_ingester().ingest(camera.outbox.root)
    assert report.ok and report.expired == []
    with Store.open(store_root) as store:
        info = store.clip(clip.clip_id)
        assert info.state == "stored" and not info.late and FLAG_START_CORRECTED in info.flags
        assert info.recorded_at == format_time(docked)
        assert info.deadline == format_time(docked + timedelta(days=14))
        event = _ingest_event(store, clip.clip_id)
        assert event["started_at"] == format_time(docked) and event["claimed_started_at"] == format_time(claimed)
    assert_store_sound(store_root)
    # The hourly timer deletes it when the deadline from the docking comes, not before.
    timer = FakeClock(docked + timedelta(days=13, hours=22))
    with Store.open(store_root, clock=timer) as store:
        assert clip.clip_id not in [d.item_id for d in store.expire().deleted]
        timer.advance(hours=1)
        assert clip.clip_id in [d.item_id for d in store.expire().deleted]


def test_wrong_clock_year_1_after_a_docking_stored_not_late(camera, make_ingester, store_root, clock):
    assert make_ingester().ingest(camera.outbox.root).ok
    clip = camera.clip(started_at=YEAR_1)
    report = make_ingester().ingest(camera.outbox.root)
    assert report.ok and report.expired == []
    with Store.open(store_root) as store:
        info = store.clip(clip.clip_id)
        assert info.state == "stored" and not info.late
        assert _ingest_event(store, clip.clip_id)["claimed_started_at"] == "0001-01-01T00:00:10.000Z"
    assert_store_sound(store_root)


def test_wrong_clock_without_a_previous_docking_the_claim_counts(camera, make_ingester, store_root, clock):
    # Nothing bounds the start from below: a clip claiming 15 days ago is a late arrival.
    clip = camera.clip(started_at=clock.now() - timedelta(days=15))
    report = make_ingester().ingest(camera.outbox.root)
    assert report.expired == [clip.clip_id]


def test_wrong_clock_a_docking_with_an_unsealed_clip_is_not_recorded(camera, make_ingester, store_root, clock):
    # A recording in progress when the dock looks (a watched folder) began before the docking
    # ends: that docking must not become the lower bound of its start.
    unsealed = camera.outbox.root / "clips" / "019a0b1c-2d3e-7f40-8a5b-6c7d8e9fa0b1"
    unsealed.mkdir(parents=True)
    (unsealed / "seg-00000.age").write_bytes(b"age-encryption.org/v1\n")
    make_ingester().ingest(camera.outbox.root)
    with Store.open(store_root) as store:
        assert store.device(camera.device_id).last_docking is None


def test_wrong_clock_verify_names_a_start_row_put_back_to_the_claim(camera, make_ingester, store_root, clock):
    assert make_ingester().ingest(camera.outbox.root).ok
    clock.advance(hours=1)
    clip = camera.clip(started_at=clock.now() - timedelta(days=15))
    assert make_ingester().ingest(camera.outbox.root).ok
    with Store.open(store_root) as store:
        claimed = _ingest_event(store, clip.clip_id)["claimed_started_at"]
        store.conn.execute("UPDATE clips SET started_at = ? WHERE clip_id = ?", (claimed, clip.clip_id))
        store.conn.commit()
        faults = [str(f) for f in verify_store(store)]
    assert any(clip.clip_id in f and "started_at" in f for f in faults), faults


def test_wrong_clock_end_to_end_camera_with_clocks_15_days_back_and_year_1(tmp_path, capsys, monkeypatch):
    """The command lines: a camera enrolled and docked once, then recording with a clock 15 days
    back and one at year 1 (``simulate --clock``): ``recover`` still works, the dock stores both,
    deletes neither, and ``verify`` is ok."""
    from device import cli as device_cli

    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(tmp_path / "dock-state"))
    outbox, store = tmp_path / "outbox", tmp_path / "store"
    (tmp_path / "pass").write_text("correct horse battery staple\n")
    assert device_cli.main(["init", "--outbox", str(outbox), "--device-id", "cam-15"]) == 0
    assert evidence_cli.main(["--store", str(store), "init", "--passphrase-file", str(tmp_path / "pass")]) == 0
    assert dock_main(["--store", str(store), "enroll", str(outbox), "--device-id", "cam-15"]) == 0
    assert dock_main(["--store", str(store), "ingest", str(outbox)]) == 0  # the previous docking
    back = format_time(datetime.now(UTC) - timedelta(days=15))
    for moment in (back, "0001-01-01T00:00:10Z"):
        assert device_cli.main(["simulate", "--outbox", str(outbox), "--seconds", "1", "--emergency",
                                "--clock", moment]) == 0
    assert device_cli.main(["recover", "--outbox", str(outbox)]) == 0
    capsys.readouterr()
    assert dock_main(["--store", str(store), "ingest", str(outbox), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["stored"] == 2 and report["expired"] == []
    assert evidence_cli.main(["--store", str(store), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["state"] for c in listed["clips"]] == ["stored", "stored"]
    done = subprocess.run([sys.executable, "-m", "evidence_store.cli", "--store", str(store), "verify"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
