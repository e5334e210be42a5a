"""``bodycam-device``: exactly the documented commands; ``simulate`` drives the real controller and
writes a real clip that the standard ``age`` tool decrypts and ffprobe plays."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from device.cli import main
from evidence_store.clip.ids import parse_time
from evidence_store.clip.manifest import MANIFEST_FILE, parse_manifest
from tests.device._kit import clip_dirs, ffprobe_frames, make_camera


def sealed_manifest(cam):
    (clip,) = clip_dirs(cam.outbox)
    return clip, parse_manifest((clip / MANIFEST_FILE).read_bytes(), cam.key.public)


def test_cli_init_key_in_state_not_outbox(tmp_path, capsys):
    outbox = tmp_path / "outbox"
    assert main(["init", "--outbox", str(outbox), "--device-id", "cam-7"]) == 0
    state = tmp_path / "outbox.state"
    assert (state / "device.key").exists() and (outbox / "device.json").exists()
    assert json.loads((outbox / "device.json").read_text())["device_id"] == "cam-7"
    assert not any("key" in p.name for p in outbox.rglob("*") if p.is_file())
    assert "public key:" in capsys.readouterr().out


def test_cli_init_twice_refuses_with_hint(tmp_path, capsys):
    outbox = tmp_path / "outbox"
    main(["init", "--outbox", str(outbox), "--device-id", "cam-7"])
    assert main(["init", "--outbox", str(outbox), "--device-id", "cam-7"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bodycam-device: error: ") and "hint: " in err


def test_cli_simulate_emergency_clip_decrypts_with_age_and_plays(tmp_path, capsys):
    cam = make_camera(tmp_path)
    code = main(["simulate", "--outbox", str(cam.outbox), "--seconds", "2", "--emergency",
                 "--clock", "2020-03-04T05:06:07Z"])
    assert code == 0
    clip, m = sealed_manifest(cam)
    assert m.trigger == "emergency" and m.end_reason == "officer" and m.clock_source == "cli"
    assert m.started_at.startswith("2020-03-04T05:06:0")  # --clock makes old clips
    identity = cam.identity_file()
    data = b"".join(subprocess.run(["age", "-d", "-i", str(identity), str(clip / s.name)],
                                   capture_output=True, check=True).stdout for s in m.segments)
    codec, frames = ffprobe_frames(data)
    assert codec == "h264"
    assert abs(frames - 2 * 25) <= 4  # two seconds at 25 fps, give or take a tick
    assert abs(m.recorded_seconds - 2.0) <= 0.2
    assert f"sealed {m.clip_id}" in capsys.readouterr().out


def test_cli_simulate_announced_keeps_announcement_time(tmp_path):
    cam = make_camera(tmp_path)
    assert main(["simulate", "--outbox", str(cam.outbox), "--seconds", "1"]) == 0
    _, m = sealed_manifest(cam)
    assert m.trigger == "announced"
    waited = (parse_time(m.started_at) - parse_time(m.announced_at)).total_seconds()
    assert 2.9 <= waited <= 3.2  # the default three-second announcement ran in full


def test_cli_simulate_not_enrolled_refused_with_hint(tmp_path, capsys):
    cam = make_camera(tmp_path, enrolled=False)
    assert main(["simulate", "--outbox", str(cam.outbox), "--seconds", "1", "--emergency"]) == 1
    err = capsys.readouterr().err
    assert "bodycam-device: error: recording refused: not enrolled" in err and "hint: enroll" in err
    assert clip_dirs(cam.outbox) == []


def test_cli_simulate_replays_file(tmp_path):
    cam = make_camera(tmp_path)
    source = tmp_path / "in.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-t", "1",
                    "-c:v", "libx264", "-bf", "0", "-g", "25", "-f", "mpegts", str(source)], check=True)
    assert main(["simulate", "--outbox", str(cam.outbox), "--seconds", "1", "--emergency",
                 "--camera", str(source)]) == 0
    clip, m = sealed_manifest(cam)
    assert ffprobe_frames(cam.decrypt(clip / m.segments[0].name))[1] >= 20


def test_cli_status_json_lists_clips(tmp_path, capsys):
    cam = make_camera(tmp_path)
    assert main(["status", "--outbox", str(cam.outbox), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device_id"] == "cam-0042" and info["enrollment"]["profile"] == "NRW"
    assert info["sealed"] == [] and info["unsealed"] == []


def test_cli_recover_nothing_to_do(tmp_path, capsys):
    cam = make_camera(tmp_path)
    assert main(["recover", "--outbox", str(cam.outbox), "--state", str(cam.state)]) == 0
    assert "nothing to recover" in capsys.readouterr().out


def test_cli_recover_without_init_errors(tmp_path, capsys):
    assert main(["recover", "--outbox", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert "bodycam-device: error:" in err and "hint: run: bodycam-device init" in err


def test_cli_run_missing_config_exit_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "device.toml"), "run"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("state", ["ob/st", "ob", "ob/clips/../st"])
def test_cli_init_state_inside_outbox_refused(tmp_path, capsys, monkeypatch, state):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "--outbox", "ob", "--device-id", "c1", "--state", state]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bodycam-device: error: the state folder") and "inside the outbox" in err
    assert len(err.splitlines()) == 2 and err.splitlines()[1].startswith("hint: ")
    assert not any(p.name == "device.key" for p in tmp_path.rglob("*"))


def test_cli_recover_state_inside_outbox_refused(tmp_path, capsys):
    cam = make_camera(tmp_path)
    assert main(["recover", "--outbox", str(cam.outbox), "--state", str(cam.outbox / "st")]) == 1
    assert "inside the outbox" in capsys.readouterr().err


def test_cli_init_outbox_unwritable_one_line_no_key_then_rerun_works(tmp_path, capsys):
    blocker = tmp_path / "mnt"
    blocker.write_text("the partition is not mounted here")  # a file where the outbox's parent should be
    outbox, state = blocker / "outbox", tmp_path / "state"
    args = ["init", "--outbox", str(outbox), "--device-id", "cam-7", "--state", str(state)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("bodycam-device: error: cannot initialise the camera") and "Traceback" not in err
    assert not (state / "device.key").exists()
    blocker.unlink()
    assert main(args) == 0
    assert (state / "device.key").exists() and (outbox / "device.json").exists()


def test_cli_init_rerun_after_key_saved_reuses_unpublished_key(tmp_path):
    from evidence_store.clip.devkey import DeviceKey

    outbox, state = tmp_path / "outbox", tmp_path / "state"
    left = DeviceKey.generate()
    left.save(state)  # an earlier init died after the key, before device.json
    assert main(["init", "--outbox", str(outbox), "--device-id", "cam-7", "--state", str(state)]) == 0
    assert json.loads((outbox / "device.json").read_text())["public_key"] == str(left.public)
    assert DeviceKey.load(state).public == left.public


@pytest.mark.parametrize("seconds", ["nan", "inf", "-inf", "0", "1e308", "43201"])
def test_cli_simulate_seconds_not_finite_positive_exit_2(tmp_path, capsys, seconds):
    cam = make_camera(tmp_path)
    assert main(["simulate", "--outbox", str(cam.outbox), f"--seconds={seconds}", "--emergency"]) == 2
    err = capsys.readouterr().err
    assert re.match(r"bodycam-device: error: (argument )?--seconds(:| must be a finite number above zero)", err)
    assert len(err.splitlines()) <= 2
    assert clip_dirs(cam.outbox) == []
