"""A recording killed at its first instant: stored, listed, exported and verified like any other.

Through the three real command lines: ``bodycam-device simulate`` is SIGKILLed as soon as it
says it records (an empty clip: the segment holds only its age header) or once its segment
holds its first sealed chunk (a nearly empty one), or its segment is left without even its
age header (power lost before the page cache reached the card); ``recover`` seals it, the dock ingests it,
and ``bodycam-evidence`` lists, shows, exports (without an MP4 when there is no video) and
verifies the package; ``view --contact-sheet`` refuses an empty clip with one line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device.cli import main as device_main
from dock.cli import main as dock_main
from evidence_store.cli import main as evidence_main

REPO = Path(__file__).resolve().parents[2]
HEADER_ONLY = 400  # an age header with one X25519 stanza and the nonce fit well below this


def _run(capsys, main, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _record_and_kill(outbox: Path, state: Path, *, after_first_chunk: bool) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "simulate", "--outbox", str(outbox),
                             "--state", str(state), "--seconds", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, cwd=REPO)
    try:
        line = proc.stdout.readline().decode()
        assert line.startswith("recording "), line
        if after_first_chunk:
            segment = outbox / "clips" / line.split()[1] / "seg-00000.age"
            deadline = time.monotonic() + 60
            while not (segment.is_file() and segment.stat().st_size > HEADER_ONLY):
                assert time.monotonic() < deadline, "the first chunk was never sealed"
                time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("after_first_chunk,header_lost", [(False, False), (True, False), (False, True)],
                         ids=["empty", "nearly-empty", "header-lost"])
def test_first_instant_killed_recording_stored_listed_exported_verified(tmp_path, capsys, monkeypatch,
                                                                        after_first_chunk, header_lost):
    monkeypatch.setenv("BODYCAM_SCRYPT_LOG_N", "10")
    passfile = tmp_path / "pass"
    passfile.write_text("secret\n")
    monkeypatch.setenv("BODYCAM_PASSPHRASE_FILE", str(passfile))
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(tmp_path / "dock-state"))
    store, outbox, state = tmp_path / "store", tmp_path / "outbox", tmp_path / "state"
    assert _run(capsys, evidence_main, "--store", store, "init")[0] == 0
    assert _run(capsys, device_main, "init", "--outbox", outbox, "--device-id", "cam-01", "--state", state)[0] == 0
    assert _run(capsys, dock_main, "--store", store, "enroll", outbox, "--device-id", "cam-01")[0] == 0

    _record_and_kill(outbox, state, after_first_chunk=after_first_chunk)
    if header_lost:
        # Power lost before the page cache reached the card: the segment file exists, empty, and
        # no journal line (each is written only after the bytes it vouches for were synced).
        (segment,) = (outbox / "clips").glob("*/seg-00000.age")
        segment.write_bytes(b"")
        (segment.parent / "journal").unlink(missing_ok=True)
    code, out, err = _run(capsys, device_main, "recover", "--outbox", outbox, "--state", state)
    assert code == 0 and "sealed " in out, err
    code, out, err = _run(capsys, dock_main, "--store", store, "ingest", outbox, "--json")
    assert code == 0, err
    counts = json.loads(out)["counts"]
    assert counts["stored"] == 1 and counts["quarantined"] == 0

    code, out, err = _run(capsys, evidence_main, "--store", store, "list", "--json")
    (clip,) = json.loads(out)["clips"]
    assert clip["state"] == "stored"
    clip_id = clip["clip_id"]
    code, out, err = _run(capsys, evidence_main, "--store", store, "show", clip_id)
    assert code == 0 and "seg-00000.age" in out and "flags: cut" in out

    package = tmp_path / "court" / "package"
    code, out, err = _run(capsys, evidence_main, "--store", store, "export", clip_id, "--out", package,
                          "--reason", "court order")
    assert code == 0 and "Traceback" not in err, err
    segment = package / "segments" / "seg-00000.ts"
    assert segment.is_file()
    if segment.stat().st_size == 0:
        assert not (package / "clip.mp4").exists()  # no picture, no MP4: the .ts are the record
    code, out, err = _run(capsys, evidence_main, "verify-export", package)
    assert code == 0 and out.startswith("ok:"), out + err

    code, out, err = _run(capsys, evidence_main, "--store", store, "view", clip_id, "--reason", "review",
                          "--contact-sheet", tmp_path / "sheet.png")
    if (package / "clip.mp4").exists():
        assert code == 0, err
    else:
        assert code == 1 and err.startswith("bodycam-evidence: error: the clip holds no decodable video frame")
        assert "Traceback" not in err and not (tmp_path / "sheet.png").exists()
    assert _run(capsys, evidence_main, "--store", store, "verify")[0] == 0
