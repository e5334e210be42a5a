"""Crash at any instant, rerun, same state: every clip in the store exactly once, the camera
cleared only of stored (or quarantined) clips, the store sound.

Two ways to crash: an exception raised at every step boundary the ingester announces through its
fault hook (deterministic, covers each boundary), and SIGKILL of a ``bodycam-dock ingest``
subprocess at random instants (covers the instants between boundaries, inside SQLite
transactions and inside the object copy).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dock.ingest import Ingester
from dock.lock import DeviceLocks
from evidence_store.clip.outbox import Outbox
from evidence_store.store import Store
from tests.clock import FakeClock
from tests.dock.conftest import new_camera
from tests.dock.helpers import assert_store_sound, outbox_clip_names, stored_clips

REPO = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Not an Exception: nothing in the dock may catch it, just as nothing survives a power cut."""


def _scenario(tmp_path: Path, n_good: int = 3):
    """A store with an enrolled camera whose outbox holds good clips, a cut clip, a gap and an
    altered clip. Returns (store_root, outbox_root, good clips, altered clip)."""
    root = tmp_path / "template-store"
    Store.init(root, b"pw", scrypt_log_n=4).close()
    with Store.open(root) as store:
        cam = new_camera(store, tmp_path / "template-outbox")
    good = [cam.clip(segments=2) for _ in range(n_good)]
    lost = cam.clip()
    shutil.rmtree(lost.folder)  # sequence n_good becomes a gap
    good.append(cam.clip(cut_last=True))
    altered = cam.clip()
    name = next(iter(altered.segments))
    data = bytearray(altered.segments[name])
    data[100] ^= 0xFF
    (altered.folder / name).write_bytes(bytes(data))
    return root, cam.outbox.root, good, altered


def _fresh(template_store: Path, template_outbox: Path, where: Path) -> tuple[Path, Path]:
    shutil.copytree(template_store, where / "store")
    shutil.copytree(template_outbox, where / "outbox", symlinks=True)
    return where / "store", where / "outbox"


def _check_final(store_root: Path, outbox_root: Path, good, altered) -> None:
    assert stored_clips(store_root) == {c.clip_id: c.manifest_sha256 for c in good}
    outbox = Outbox(outbox_root)
    assert outbox_clip_names(outbox) == []
    with Store.open(store_root) as store:
        vkey = store.verifier_key
        events = store.events()
        quarantined = store.conn.execute("SELECT clip_id FROM quarantine").fetchall()
    for clip in good:
        assert outbox.receipt(clip.clip_id, vkey).status == "stored"
    assert outbox.receipt(altered.clip_id, vkey).status == "quarantined"
    assert quarantined == [(altered.clip_id,)]  # quarantined once, however often it was retried
    ingests = [e["clip"] for e in events if e["kind"] == "ingest"]
    assert sorted(ingests) == sorted(c.clip_id for c in good)  # one ingest event per clip
    assert len([e for e in events if e["kind"] == "gap"]) == 1
    assert_store_sound(store_root)


def _ingester(store_root: Path, state: Path, fault=None) -> Ingester:
    return Ingester(lambda: Store.open(store_root), locks=DeviceLocks(state / "locks"), clock=FakeClock(),
                    fault=fault, state_dir=state)


def test_crash_at_every_step_boundary_rerun_same_state(tmp_path):
    template_store, template_outbox, good, altered = _scenario(tmp_path)
    steps: list[tuple[str, str | None]] = []
    probe_store, probe_outbox = _fresh(template_store, template_outbox, tmp_path / "probe")
    _ingester(probe_store, tmp_path / "probe" / "state", fault=lambda s, c: steps.append((s, c))).ingest(probe_outbox)
    _check_final(probe_store, probe_outbox, good, altered)
    assert {"scanned", "checked", "segment-copied", "ingested", "quarantined", "receipt-written", "clip-deleted",
            "clock-written", "enrollment-written", "docking-recorded"} <= {s for s, _ in steps}
    for k, step in enumerate(steps):
        where = tmp_path / f"crash-{k}"
        where.mkdir()
        store_root, outbox_root = _fresh(template_store, template_outbox, where)
        calls = []

        def fault(step_name, clip_id, calls=calls, k=k):
            calls.append(step_name)
            if len(calls) == k + 1:
                raise Crash(step_name)

        with pytest.raises(Crash):
            _ingester(store_root, where / "state", fault).ingest(outbox_root)
        # Between the crash and the rerun nothing may be lost: every clip is on the camera or stored.
        on_camera = set(outbox_clip_names(Outbox(outbox_root)))
        assert all(c.clip_id in on_camera or c.clip_id in stored_clips(store_root) for c in good), step
        _ingester(store_root, where / "state").ingest(outbox_root)
        _check_final(store_root, outbox_root, good, altered)
        shutil.rmtree(where)


def test_crash_twice_at_same_step_rerun_same_state(tmp_path):
    template_store, template_outbox, good, altered = _scenario(tmp_path, n_good=2)
    for step in ("segment-copied", "ingested", "quarantined", "receipt-written"):
        where = tmp_path / step
        where.mkdir()
        store_root, outbox_root = _fresh(template_store, template_outbox, where)

        def fault(step_name, clip_id, step=step):
            if step_name == step:
                raise Crash(step_name)

        for attempt in range(2):
            try:
                _ingester(store_root, where / "state", fault).ingest(outbox_root)
            except Crash:
                continue
            # A rerun may never reach the step again: a clip quarantined before the crash is
            # only receipted and cleared (nothing recorded twice), so only the first run must die.
            assert attempt == 1, step
        _ingester(store_root, where / "state").ingest(outbox_root)
        _check_final(store_root, outbox_root, good, altered)


def _cli(store_root: Path, outbox_root: Path, state: Path) -> subprocess.Popen:
    env = dict(os.environ, BODYCAM_DOCK_STATE=str(state), PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "dock.cli", "--store", str(store_root), "ingest", str(outbox_root), "--json"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_crash_sigkill_at_random_instants_rerun_same_state(tmp_path):
    template_store, template_outbox, good, altered = _scenario(tmp_path, n_good=16)
    # How long a whole run takes here, to spread the kills over it.
    store_root, outbox_root = _fresh(template_store, template_outbox, tmp_path / "timing")
    start = time.monotonic()
    assert _cli(store_root, outbox_root, tmp_path / "timing" / "state").wait(timeout=120) == 4  # one quarantined
    duration = time.monotonic() - start
    _check_final(store_root, outbox_root, good, altered)
    # A fixed seed (DOCK_CRASH_SEED overrides it), and kills placed by progress, not by wall time:
    # each kill waits until the run has cleared a chosen number of clip folders, then lands a
    # random instant later (inside the next clip's copy, commit or clearing). So the test
    # exercises the same interleavings on a fast or a loaded machine and cannot miss the ingest.
    seed = int(os.environ.get("DOCK_CRASH_SEED", "20261201"))
    rng = random.Random(seed)
    interrupted = 0
    for round_ in range(10):
        where = tmp_path / f"kill-{round_}"
        where.mkdir()
        store_root, outbox_root = _fresh(template_store, template_outbox, where)
        # Kill up to twice per round: also a rerun can die.
        for _ in range(rng.choice((1, 2))):
            before = len(outbox_clip_names(Outbox(outbox_root)))
            target = before - rng.randint(0, max(0, before - 1))
            proc = _cli(store_root, outbox_root, where / "state")
            while proc.poll() is None and len(outbox_clip_names(Outbox(outbox_root))) > target:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.1 * duration / (len(good) + 1)))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        if 0 < len(outbox_clip_names(Outbox(outbox_root))) < len(good) + 1:
            interrupted += 1  # killed mid-ingest, not before or after
        report = _ingester(store_root, where / "state").ingest(outbox_root)
        assert not report.errors, (seed, report.errors)
        _check_final(store_root, outbox_root, good, altered)
        shutil.rmtree(where)
    assert interrupted, f"no kill landed mid-ingest (seed {seed}); the timing window is off"


def test_crash_clearing_cut_after_manifest_leaves_empty_folder_next_docking_removes_it(camera, ingester, store_root):
    # The clearing deletes the manifest last; a kill between that and removing the folder leaves
    # an empty folder beside its receipt. It must not be reported as an unsealed recording forever.
    clip = camera.clip()
    assert ingester.ingest(camera.outbox.root).ok
    clip.folder.mkdir()  # what the cut-off clearing left
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and report.unsealed == []
    assert not clip.folder.exists()


def test_crash_clearing_cut_before_manifest_leaves_sealed_folder_next_docking_finishes(camera, ingester, store_root,
                                                                                      tmp_path):
    import shutil as _shutil

    clip = camera.clip()
    keep = tmp_path / "keep"
    _shutil.copytree(clip.folder, keep)
    assert ingester.ingest(camera.outbox.root).ok
    # Only the manifest survived the cut-off clearing (segments and journal went first).
    clip.folder.mkdir()
    _shutil.copy(keep / "manifest", clip.folder / "manifest")
    _shutil.rmtree(keep)
    report = ingester.ingest(camera.outbox.root)
    assert report.ok and [c.outcome for c in report.clips] == ["already-stored"]
    assert not clip.folder.exists()
