"""Decrypted video on disk: private while it exists, removed after a crash (evidence_store/plaintext.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from evidence_store import plaintext
from evidence_store.cli import main
from tests.evidence_store.conftest import PASSPHRASE

# The real export command, killed by a real SIGKILL once it has decrypted every segment (the
# remux step is where it waits for the signal: a seam in place of a race against the clock).
KILLED_EXPORT = """
import sys, time
import evidence_store.export as export
def remux_and_wait(ts_files, mp4):
    print("decrypted", flush=True)
    time.sleep(600)
export.remux_to_mp4 = remux_and_wait
from evidence_store.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_export_after_decryption(store_root: Path, clip_id: str, out: Path, passfile: Path) -> None:
    env = dict(os.environ, BODYCAM_PASSPHRASE_FILE=str(passfile), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, "--store", str(store_root), "export", clip_id,
         "--out", str(out), "--reason", "court order"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        assert line == b"decrypted\n", proc.stderr.read().decode()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _workdirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(plaintext.PREFIX)]


def test_plaintext_export_sigkilled_after_decryption_removed_by_next_command(store, add_clip, tmp_path, capsys):
    clip = add_clip(segments=2, seconds=2.0)
    store.close()
    passfile = tmp_path / "pass"
    passfile.write_bytes(PASSPHRASE)
    court = tmp_path / "court"
    court.mkdir()
    _kill_export_after_decryption(store.root, clip.clip_id, court / "package", passfile)

    # What the kill left: decrypted segments in a private folder that only its user may enter.
    (work,) = _workdirs(court)
    segments = sorted((work / "segments").iterdir())
    assert [p.name for p in segments] == ["seg-00000.ts", "seg-00001.ts"]
    assert segments[0].stat().st_size > 0
    assert work.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in segments} == {0o600}
    assert (work / "segments").stat().st_mode & 0o777 == 0o700
    assert not (court / "package").exists()

    # The next store command, whatever it is, removes it: its process is gone.
    assert main(["--store", str(store.root), "list"]) == 0
    capsys.readouterr()
    assert _workdirs(court) == []
    assert list((store.root / plaintext.REGISTRY_DIR).iterdir()) == []
    # The store is sound and the access stays logged (decryption had begun).
    assert main(["--store", str(store.root), "verify"]) == 0
    assert "ok:" in capsys.readouterr().out


def test_plaintext_export_sigkilled_then_export_into_same_folder_sweeps_it(store, add_clip, tmp_path, capsys):
    clip = add_clip()
    store.close()
    passfile = tmp_path / "pass"
    passfile.write_bytes(PASSPHRASE)
    court = tmp_path / "court"
    court.mkdir()
    _kill_export_after_decryption(store.root, clip.clip_id, court / "first", passfile)
    assert len(_workdirs(court)) == 1
    # Even with the registry gone (an administrator cleaned the store folder), an export into the
    # same folder finds the dead process's folder by its name.
    for entry in (store.root / plaintext.REGISTRY_DIR).iterdir():
        entry.unlink()
    code = main(["--store", str(store.root), "export", clip.clip_id, "--out", str(court / "second"),
                 "--reason", "court", "--passphrase-file", str(passfile)])
    assert code == 0, capsys.readouterr().err
    assert _workdirs(court) == []
    assert sorted(p.name for p in court.iterdir()) == ["second"]


def test_plaintext_workdir_of_live_process_kept_by_sweep(store, tmp_path):
    work = plaintext.make_workdir(tmp_path, "export", store.root)
    (work / "x.ts").write_bytes(b"plain")
    assert plaintext.sweep(store.root, tmp_path) == 0
    assert work.is_dir()
    plaintext.remove_workdir(work, store.root)
    assert not work.exists() and list((store.root / plaintext.REGISTRY_DIR).iterdir()) == []


def test_plaintext_workdir_of_reused_pid_is_swept(store, tmp_path):
    # pid 1 runs, but it was not the process that made this folder: its start time differs.
    boot = plaintext._boot_id()
    name = f"{plaintext.PREFIX}export-{boot}-1-99999999999-0123abcd"
    (tmp_path / name).mkdir(mode=0o700)
    assert plaintext.owner_alive(name) is False
    assert plaintext.sweep(store.root, tmp_path) == 1
    assert not (tmp_path / name).exists()


def test_plaintext_registration_pointing_elsewhere_removes_nothing_else(store, tmp_path):
    # An edited registration may only ever remove the folder named exactly like itself.
    victim = tmp_path / "important"
    victim.mkdir()
    name = f"{plaintext.PREFIX}export-{plaintext._boot_id()}-1-99999999999-0123abcd"
    registry = store.root / plaintext.REGISTRY_DIR
    registry.mkdir(exist_ok=True)
    (registry / name).write_text(str(victim))
    plaintext.sweep(store.root)
    assert victim.is_dir()
    assert not (registry / name).exists()
