"""bodycam-dock's command line: exact commands, exit codes, error format, JSON, and the end-to-end
path camera -> dock -> store with the other two CLIs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from device import cli as device_cli
from dock.cli import main
from evidence_store import cli as evidence_cli
from evidence_store.clip.outbox import DeviceRecord, Outbox
from tests.dock.conftest import new_camera
from tests.dock.helpers import assert_cleared, stored_clips


def test_cli_ingest_all_stored_exit_zero_json_summary(camera, store_root, store, state_dir, capsys):
    clips = [camera.clip(), camera.clip()]
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["counts"]["stored"] == 2 and out["device_id"] == camera.device_id
    assert_cleared(camera.outbox, clips, store.verifier_key)


def test_cli_ingest_quarantined_clip_exit_four(camera, store_root, state_dir, capsys):
    clip = camera.clip()
    (clip.folder / next(iter(clip.segments))).write_bytes(b"not the camera's bytes")
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root)]) == 4
    out = capsys.readouterr().out
    assert f"{clip.clip_id}  quarantined" in out and "1 quarantined" in out


def test_cli_store_from_environment(camera, store_root, state_dir, monkeypatch, capsys):
    camera.clip()
    monkeypatch.setenv("BODYCAM_STORE", str(store_root))
    assert main(["ingest", str(camera.outbox.root)]) == 0


def test_cli_no_store_error_with_hint_exit_two(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    assert main(["ingest", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bodycam-dock: error: no store given" in err and "hint: pass --store DIR" in err


def test_cli_not_a_store_error_one_line(tmp_path, capsys):
    assert main(["--store", str(tmp_path / "nothing"), "status"]) == 1
    err = capsys.readouterr().err
    assert "bodycam-dock: error:" in err and "hint:" in err and "Traceback" not in err


def test_cli_verbose_error_shows_traceback(tmp_path, capsys):
    assert main(["-v", "--store", str(tmp_path / "nothing"), "status"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_cli_unenrolled_camera_exit_five(store, store_root, tmp_path, state_dir, capsys):
    stranger = new_camera(store, tmp_path / "stranger", "cam-99", enroll=False)
    assert main(["--store", str(store_root), "ingest", str(stranger.outbox.root)]) == 5
    assert "hint: bodycam-dock --store DIR enroll" in capsys.readouterr().err


def test_cli_bad_arguments_exit_two(capsys):
    assert main(["--store", "x", "assign", "cam-07"]) == 2
    assert "--officer" in capsys.readouterr().err


def test_cli_enroll_writes_enrollment_and_clock(store_root, tmp_path, capsys):
    from evidence_store.clip.devkey import DeviceKey
    from evidence_store.store import Store

    outbox = Outbox(tmp_path / "new")
    outbox.init(DeviceRecord("cam-11", str(DeviceKey.generate().public)))
    assert main(["--store", str(store_root), "enroll", str(outbox.root), "--device-id", "cam-11"]) == 0
    with Store.open(store_root) as store:
        assert store.device("cam-11") is not None
        assert outbox.enrollment(store.verifier_key).device_id == "cam-11"
        assert [e["kind"] for e in store.events()] == ["config", "enroll"]
        assert outbox.clock(store.verifier_key).device_id == "cam-11"


def test_cli_enroll_device_id_differs_refused(store_root, tmp_path, capsys):
    from evidence_store.clip.devkey import DeviceKey
    from evidence_store.store import Store

    outbox = Outbox(tmp_path / "new")
    outbox.init(DeviceRecord("cam-11", str(DeviceKey.generate().public)))
    assert main(["--store", str(store_root), "enroll", str(outbox.root), "--device-id", "cam-12"]) == 1
    assert "the camera says it is 'cam-11', not 'cam-12'" in capsys.readouterr().err
    with Store.open(store_root) as store:
        assert store.devices() == []
    assert outbox.enrollment() is None


def test_cli_assign_and_revoke_reach_store_and_camera(camera, store_root, state_dir, capsys):
    from evidence_store.store import Store

    assert main(["--store", str(store_root), "assign", camera.device_id, "--officer", "PK-0815"]) == 0
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root)]) == 0
    with Store.open(store_root) as store:
        assert camera.outbox.enrollment(store.verifier_key).officer == "PK-0815"
    assert main(["--store", str(store_root), "revoke", camera.device_id, "--reason", "lost on duty"]) == 0
    camera.clip()
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root)]) == 4
    with Store.open(store_root) as store:
        kinds = [e["kind"] for e in store.events()]
    assert kinds[-5:] == ["assign", "docking", "revoke", "quarantine", "docking"]


def test_cli_status_json_cameras_docking_pending_quarantined(camera, store_root, state_dir, capsys):
    camera.clip()
    unsealed = camera.clip()
    (unsealed.folder / "manifest").unlink()
    bad = camera.clip()
    (bad.folder / "journal").write_bytes(b"garbage\n")
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root)]) == 4
    capsys.readouterr()
    assert main(["--store", str(store_root), "status", "--json"]) == 0
    cam = json.loads(capsys.readouterr().out)["cameras"][0]
    # A docking that leaves an unsealed clip behind is not recorded: that clip began before it
    # (retention.earliest_start must not count its deadline from this docking).
    assert cam["device_id"] == camera.device_id and cam["last_docking"] is None
    assert cam["pending"] == [unsealed.clip_id] and cam["quarantined"] == 1
    assert main(["--store", str(store_root), "status"]) == 0
    text = capsys.readouterr().out
    assert "pending on the camera: 1 clip(s)" in text and "quarantined: 1" in text


@pytest.fixture
def enrolled_outbox(tmp_path, state_dir, monkeypatch):
    """A store and a camera outbox made and enrolled with the three real command lines."""
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    (tmp_path / "pass").write_text("correct horse\n")
    store, outbox = tmp_path / "store", tmp_path / "outbox"
    assert evidence_cli.main(["--store", str(store), "init", "--passphrase-file", str(tmp_path / "pass")]) == 0
    assert device_cli.main(["init", "--outbox", str(outbox), "--device-id", "cam-07"]) == 0
    assert main(["--store", str(store), "enroll", str(outbox), "--device-id", "cam-07"]) == 0
    return store, outbox


def test_cli_end_to_end_simulated_camera_ingested_and_verified(enrolled_outbox, capsys):
    store, outbox = enrolled_outbox
    assert device_cli.main(["simulate", "--outbox", str(outbox), "--seconds", "1"]) == 0
    assert device_cli.main(["simulate", "--outbox", str(outbox), "--seconds", "1", "--emergency"]) == 0
    capsys.readouterr()
    assert main(["--store", str(store), "ingest", str(outbox), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["stored"] == 2
    assert evidence_cli.main(["--store", str(store), "verify"]) == 0
    assert sorted(p.name for p in outbox.iterdir() if p.name != "clips") == ["clock", "device.json", "enrollment", "receipts"]
    assert list((outbox / "clips").iterdir()) == []
    assert len(list((outbox / "receipts").iterdir())) == 2
    assert len(stored_clips(store)) == 2


def test_cli_end_to_end_killed_camera_recovered_then_ingested_as_cut(enrolled_outbox, capsys):
    # The whole crash path with the real command lines: power lost mid-recording (SIGKILL), the
    # camera's next start seals the clip from its journal, the dock stores it (flagged cut, never
    # quarantined) and the store verifies.
    store, outbox = enrolled_outbox
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "simulate", "--outbox", str(outbox), "--seconds", "30",
                             "--emergency"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=dict(os.environ))
    try:
        assert proc.stdout.readline().decode().startswith("recording ")
        time.sleep(2.5)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert device_cli.main(["recover", "--outbox", str(outbox)]) == 0
    capsys.readouterr()
    assert main(["--store", str(store), "ingest", str(outbox), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (clip,) = report["clips"]
    assert clip["outcome"] == "stored" and "cut" in clip["flags"]
    assert evidence_cli.main(["--store", str(store), "verify"]) == 0
    assert list((outbox / "clips").iterdir()) == []


def test_cli_unwritable_state_folder_one_line_error(camera, store_root, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(blocker / "state"))
    camera.clip()
    assert main(["--store", str(store_root), "ingest", str(camera.outbox.root)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bodycam-dock: error: ") and "Traceback" not in err and "hint:" in err


def test_cli_ingest_json_error_object_on_stdout(store, store_root, tmp_path, state_dir, capsys):
    stranger = new_camera(store, tmp_path / "stranger", "cam-99", enroll=False)
    assert main(["--store", str(store_root), "ingest", str(stranger.outbox.root), "--json"]) == 5
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out == {"ok": False, "exit_code": 5, "error": out["error"]} and "cam-99" in out["error"]
    assert captured.err.startswith("bodycam-dock: error: ")
