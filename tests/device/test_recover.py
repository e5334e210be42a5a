"""Recovery: clips a crash left unsealed are sealed from their journal, bytes untouched; the chain
head survives a crash while sealing; a crash while recording resumes in a linked clip."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.recorder_api import Trigger
from device.recover import recover
from evidence_store.clip.ids import parse_time
from evidence_store.clip.manifest import MANIFEST_FILE, manifest_hash, parse_manifest
from tests.device._kit import clip_dirs, ffprobe_duration, ffprobe_frames, make_camera
from tests.device.test_recorder import FRAME, make_recorder, record

REPO = Path(__file__).resolve().parents[2]


def crash_mid_recording(cam, clock, frames=30):
    """Record, then abandon the recorder as a SIGKILL would: nothing more reaches the disk."""
    recorder, camera = make_recorder(cam, clock)
    recorder.start(Trigger("emergency", None, clock.now()))
    for _ in range(frames):
        camera.produce(1)
        clock.advance(FRAME)
        recorder.poll()
    clip = clip_dirs(cam.outbox)[0]
    return clip, camera


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("seg-*.age")}


def test_recover_cut_segment_sealed_interrupted_bytes_untouched(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, camera = crash_mid_recording(cam, clock)
    before = digests(clip)
    report = recover(cam.outbox, cam.state, cam.key)
    assert report.sealed == [clip.name]
    assert digests(clip) == before
    m = parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)
    assert m.end_reason == "interrupted" and m.trigger == "emergency" and m.officer == "PK-1001"
    (seg,) = m.segments
    assert seg.cut and seg.committed_bytes <= seg.bytes and seg.sha256 == before["seg-00000.age"]
    data, salvage = cam.salvage(clip / seg.name)
    assert salvage.cut and len(data) == seg.plaintext_bytes
    frames = ffprobe_frames(data)[1]
    assert 30 - 1 / FRAME <= frames <= 30  # at most a second lost; what is left plays


def test_recover_twice_changes_nothing(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock)
    recover(cam.outbox, cam.state, cam.key)
    manifest = (clip / MANIFEST_FILE).read_bytes()
    again = recover(cam.outbox, cam.state, cam.key)
    assert again.sealed == [] and (clip / MANIFEST_FILE).read_bytes() == manifest


def test_recover_crash_between_manifest_and_chain_head_reconciles(tmp_path, clock):
    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock)
    first = record(recorder, camera, clock, 0.4)
    (cam.state / "chain.json").unlink()  # as if the head's atomic write never happened
    report = recover(cam.outbox, cam.state, cam.key)
    data = (cam.outbox / "clips" / first.clip_id / MANIFEST_FILE).read_bytes()
    assert report.chain.next_sequence == 1 and report.chain.last_manifest == manifest_hash(data)
    second = record(recorder, camera, clock, 0.4)
    assert second.sequence == 1 and second.previous_manifest == manifest_hash(data)


def test_recover_marker_same_boot_resume_links_new_clip(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=10)
    report = recover(cam.outbox, cam.state, cam.key)
    assert report.resume is not None and report.resume.clip_id == clip.name
    assert report.resume.trigger.kind == "emergency"
    assert not (cam.state / "recording.json").exists()
    recorder, camera = make_recorder(cam, clock)
    recorder.set_resume(report.resume.clip_id)
    trigger = report.resume.trigger
    recorder.start(Trigger(trigger.kind, trigger.announced_at, trigger.started_at, resumed_at=clock.now()))
    camera.produce(5)
    recorder.stop("officer")
    assert recorder.last_sealed.resumes == clip.name and recorder.last_sealed.sequence == 1


def test_recover_marker_from_earlier_boot_no_resume(tmp_path, clock):
    cam = make_camera(tmp_path)
    crash_mid_recording(cam, clock, frames=10)
    marker = json.loads((cam.state / "recording.json").read_text())
    marker["boot_id"] = "an-earlier-boot"
    (cam.state / "recording.json").write_text(json.dumps(marker))
    report = recover(cam.outbox, cam.state, cam.key)
    assert len(report.sealed) == 1 and report.resume is None


def test_recover_tampered_segment_sealed_with_note_bytes_kept(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=10)
    seg = clip / "seg-00000.age"
    data = bytearray(seg.read_bytes())
    data[200] ^= 1
    seg.write_bytes(bytes(data))
    recover(cam.outbox, cam.state, cam.key)
    m = parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)
    assert m.segments[0].committed_bytes == 0 and m.segments[0].cut
    assert any("differ" in n for n in m.notes) and seg.read_bytes() == bytes(data)


def test_recover_no_marker_records_emergency_and_clip_time(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=10)
    (cam.state / "recording.json").unlink()
    recover(cam.outbox, cam.state, cam.key)
    m = parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)
    assert m.trigger == "emergency" and any("trigger unknown" in n for n in m.notes)


def test_recover_empty_clip_folder_removed(tmp_path, clock):
    cam = make_camera(tmp_path)
    empty = cam.outbox / "clips" / "018f3398-c100-7817-ba81-71b4274f3a33"
    empty.mkdir()
    report = recover(cam.outbox, cam.state, cam.key)
    assert report.removed_empty == [empty.name] and not empty.exists()


def test_recover_sigkill_during_simulate_loses_at_most_one_second(tmp_path):
    cam = make_camera(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "device.cli", "simulate", "--outbox", str(cam.outbox), "--seconds", "30",
         "--emergency"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline().decode()
        started = time.monotonic()
        assert line.startswith("recording "), line
        time.sleep(2.5)
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
    finally:
        proc.kill()
        proc.wait()
    recorded = killed - started
    assert (cam.state / "recording.json").exists()
    from device.cli import main

    assert main(["recover", "--outbox", str(cam.outbox)]) == 0
    (clip,) = clip_dirs(cam.outbox)
    m = parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)
    assert m.end_reason == "interrupted" and m.segments[0].cut
    data, salvage = cam.salvage(clip / m.segments[0].name)
    assert salvage.cut
    duration = ffprobe_duration(data)
    # At most one second lost (a little slack for the camera starting just before the line).
    print(f"recorded {recorded:.2f} s before the kill, {duration:.2f} s recovered")
    assert recorded - 1.0 <= duration <= recorded + 0.3, (recorded, duration)
    assert ffprobe_frames(data)[0] == "h264"
    assert parse_time(m.ended_at) > parse_time(m.started_at)


def test_recover_boot_id_hidden_runtime_token_same_boot_resumes(tmp_path, clock, monkeypatch, capsys):
    # Under the unit's ProcSubset=pid the kernel's boot id is unreadable; the token in
    # $RUNTIME_DIRECTORY (on /run, emptied at boot) tells a crash from a power cut instead.
    import device.state

    monkeypatch.setattr(device.state, "BOOT_ID_FILE", tmp_path / "no-proc" / "boot_id")
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=10)
    assert json.loads((cam.state / "recording.json").read_text())["boot_id"]
    from device.cli import main

    assert main(["recover", "--outbox", str(cam.outbox), "--state", str(cam.state)]) == 0
    assert f"the process died while recording {clip.name}" in capsys.readouterr().out


def test_recover_boot_id_hidden_new_runtime_dir_is_a_reboot_no_resume(tmp_path, clock, monkeypatch):
    import device.state

    monkeypatch.setattr(device.state, "BOOT_ID_FILE", tmp_path / "no-proc" / "boot_id")
    for name in ("run-boot1", "run-boot2"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run-boot1"))
    cam = make_camera(tmp_path)
    crash_mid_recording(cam, clock, frames=10)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run-boot2"))  # /run after a power cut
    report = recover(cam.outbox, cam.state, cam.key)
    assert len(report.sealed) == 1 and report.resume is None


def test_recover_malformed_marker_set_aside_clip_still_sealed(tmp_path, clock):
    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=10)
    (cam.state / "recording.json").write_text(json.dumps({"clip": clip.name, "version": 2}))
    report = recover(cam.outbox, cam.state, cam.key)
    assert report.sealed == [clip.name]
    assert report.marker_set_aside == cam.state / "recording.json.bad"
    assert not (cam.state / "recording.json").exists() and (cam.state / "recording.json.bad").exists()
    m = parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)
    assert m.trigger == "emergency" and any("trigger unknown" in n for n in m.notes)


def test_recover_marker_of_wrong_types_is_a_device_error_not_a_traceback(tmp_path, clock):
    from device.errors import DeviceError
    from device.state import StateDir

    cam = make_camera(tmp_path)
    crash_mid_recording(cam, clock, frames=3)
    marker = json.loads((cam.state / "recording.json").read_text())
    (cam.state / "recording.json").write_text(json.dumps(dict(marker, prerecord_seconds="3")))
    with pytest.raises(DeviceError, match="malformed: field 'prerecord_seconds'"):
        StateDir(cam.state).marker()
    (cam.state / "chain.json").write_text("[1, 2]")
    with pytest.raises(DeviceError, match="chain.json is malformed"):
        StateDir(cam.state).chain()


def test_recover_cli_malformed_marker_one_line_and_rerun_clean(tmp_path, clock, capsys):
    from device.cli import main

    cam = make_camera(tmp_path)
    clip, _ = crash_mid_recording(cam, clock, frames=5)
    (cam.state / "recording.json").write_text("[]")
    assert main(["recover", "--outbox", str(cam.outbox), "--state", str(cam.state)]) == 0
    out, err = capsys.readouterr()
    assert f"sealed {clip.name}" in out and "recording.json.bad" in err and "Traceback" not in err
    assert main(["recover", "--outbox", str(cam.outbox), "--state", str(cam.state)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
