"""Sound, end to end through the real command lines: a replayed file with sound is
recorded by ``bodycam-device simulate``, ingested by ``bodycam-dock ingest`` and exported by
``bodycam-evidence export``; the exported MP4 has AAC beside H.264, as long as the picture, and a
click in the source is still at its picture's marker. Short, small clips: the CPU is shared."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device import cli as device_cli
from dock import cli as dock_cli
from evidence_store import cli as evidence_cli
from tests.soundcheck import find_marks, make_source, offsets

pytestmark = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe is not installed")

FRAME_S = 1 / 25
SYNC_TOLERANCE_S = 0.040


@pytest.fixture
def sound_store(tmp_path, monkeypatch):
    """A store and an enrolled camera outbox, made with the three real command lines."""
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(tmp_path / "dock-state"))
    passphrase = tmp_path / "pass"
    passphrase.write_text("correct horse\n")
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(passphrase))
    store, outbox = tmp_path / "store", tmp_path / "outbox"
    assert evidence_cli.main(["--store", str(store), "init"]) == 0
    assert device_cli.main(["init", "--outbox", str(outbox), "--device-id", "cam-07"]) == 0
    assert dock_cli.main(["--store", str(store), "enroll", str(outbox), "--device-id", "cam-07"]) == 0
    return store, outbox


def ingest_and_export(store: Path, outbox: Path, out: Path, capsys) -> dict:
    """Ingest everything, export the one clip; returns its ``show --json``."""
    capsys.readouterr()
    assert dock_cli.main(["--store", str(store), "ingest", str(outbox), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (clip,) = report["clips"]
    assert evidence_cli.main(["--store", str(store), "show", clip["clip_id"], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert evidence_cli.main(["--store", str(store), "export", clip["clip_id"], "--out", str(out),
                              "--reason", "court request 12 Js 345/26"]) == 0
    assert evidence_cli.main(["verify-export", str(out)]) == 0
    return shown


def probe_streams(path: Path) -> dict[str, dict]:
    result = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                             "stream=codec_type,codec_name,profile,sample_rate,channels,duration",
                             "-of", "json", str(path)], capture_output=True, check=True, text=True)
    return {s["codec_type"]: s for s in json.loads(result.stdout)["streams"]}


def test_sound_replayed_file_exported_with_aac_in_sync(sound_store, tmp_path, capsys):
    store, outbox = sound_store
    source = tmp_path / "source.ts"
    make_source(source, seconds=3.0, marks=(1.0, 2.2))
    assert device_cli.main(["simulate", "--outbox", str(outbox), "--camera", str(source), "--seconds", "3",
                            "--emergency"]) == 0
    shown = ingest_and_export(store, outbox, tmp_path / "export", capsys)
    assert shown["sound"] is True
    mp4 = tmp_path / "export" / "clip.mp4"
    streams = probe_streams(mp4)
    video, audio = streams["video"], streams["audio"]
    assert video["codec_name"] == "h264"
    assert (audio["codec_name"], audio["profile"], audio["sample_rate"], audio["channels"]) == ("aac", "LC", "48000", 1)
    assert abs(float(audio["duration"]) - float(video["duration"])) <= FRAME_S
    boxes, clicks = find_marks(mp4)
    assert len(boxes) >= 2 and len(clicks) >= len(boxes)  # the source's two marks, at least once
    assert all(abs(o) <= SYNC_TOLERANCE_S for o in offsets(boxes, clicks)), offsets(boxes, clicks)
    print("A/V offsets (s):", offsets(boxes, clicks))
    capsys.readouterr()
    assert evidence_cli.main(["--store", str(store), "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)["clips"]
    assert listed["sound"] is True
    heard = tmp_path / "player-input.ts"  # the player gets picture and sound through its pipe
    player = f"sh -c 'cat > {heard}'"
    assert evidence_cli.main(["--store", str(store), "view", listed["clip_id"], "--reason", "review",
                              "--player", player]) == 0
    assert probe_streams(heard)["audio"]["codec_name"] == "aac"
    sheet = tmp_path / "sheet.png"
    assert evidence_cli.main(["--store", str(store), "view", listed["clip_id"], "--reason", "review",
                              "--contact-sheet", str(sheet)]) == 0
    assert loudness_bars(sheet) >= 2  # the stills around the clicks show loud sound


def loudness_bars(sheet: Path) -> int:
    """How many stills of a contact sheet have a loudness bar over half their width."""
    from PIL import Image

    from evidence_store.view import CAPTION_HEIGHT, SHEET_COLUMNS, STRIP_HEIGHT, THUMB_HEIGHT, THUMB_WIDTH

    image = Image.open(sheet).convert("RGB")
    cell = THUMB_HEIGHT + STRIP_HEIGHT + CAPTION_HEIGHT
    bars = 0
    for row in range((image.height - CAPTION_HEIGHT) // cell):
        y = CAPTION_HEIGHT + row * cell + THUMB_HEIGHT + STRIP_HEIGHT // 2
        for column in range(SHEET_COLUMNS):
            if image.getpixel((column * THUMB_WIDTH + THUMB_WIDTH // 2, y)) != (0, 0, 0):
                bars += 1
    return bars


def test_sound_sigkill_salvaged_segment_has_both_streams_to_the_cut(sound_store, tmp_path, capsys):
    store, outbox = sound_store
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "simulate", "--outbox", str(outbox),
                             "--seconds", "30", "--emergency"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=dict(os.environ))
    try:
        assert proc.stdout.readline().decode().startswith("recording ")
        time.sleep(2.5)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert device_cli.main(["recover", "--outbox", str(outbox)]) == 0
    shown = ingest_and_export(store, outbox, tmp_path / "export", capsys)
    assert shown["sound"] is True  # from the recording marker: the camera cannot decrypt to look
    (segment,) = (tmp_path / "export" / "segments").glob("*.ts")
    streams = probe_streams(segment)
    assert streams["video"]["codec_name"] == "h264" and streams["audio"]["codec_name"] == "aac"
    boxes, clicks = find_marks(segment)  # the synthetic camera's marks: a box and a click a second
    assert boxes and all(abs(o) <= SYNC_TOLERANCE_S for o in offsets(boxes, clicks))
    mp4 = probe_streams(tmp_path / "export" / "clip.mp4")
    assert abs(float(mp4["audio"]["duration"]) - float(mp4["video"]["duration"])) <= FRAME_S
