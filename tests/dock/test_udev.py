"""Docking by udev: the handler with fake events, the real pyudev source under umockdev, and the
real mount(8) on a loop-mounted ext4 image of a camera's partition."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dock.mount import MOUNT_OPTIONS, RealMounter
from dock.udev import DockingHandler, UdevEvent, event_from_properties
from evidence_store.clip.outbox import Outbox
from tests.dock.conftest import new_camera
from tests.dock.helpers import FolderMounter, assert_store_sound, outbox_clip_names, stored_clips

REPO = Path(__file__).resolve().parents[2]


def _handler(ingester, store, mounter, tmp_path):
    return DockingHandler(ingest=ingester.ingest, mounter=mounter, enrolled=lambda: [d.device_id for d in store.devices()],
                          label="BODYCAM", mount_root=tmp_path / "mnt")


def test_udev_event_from_properties_reads_label_and_serial():
    event = event_from_properties("add", {"DEVNAME": "/dev/sdb1", "ID_FS_LABEL": "BODYCAM", "ID_SERIAL_SHORT": "cam-07"})
    assert event == UdevEvent("add", "/dev/sdb1", "BODYCAM", "cam-07")
    assert event_from_properties("add", {"ID_FS_LABEL": "BODYCAM"}) is None


def test_udev_docked_camera_mounted_ingested_unmounted(camera, ingester, store, store_root, tmp_path):
    clips = [camera.clip(), camera.clip()]
    mounter = FolderMounter({"/dev/sdb1": camera.outbox.root})
    report = _handler(ingester, store, mounter, tmp_path).handle(UdevEvent("add", "/dev/sdb1", "BODYCAM", camera.device_id))
    assert report.ok and len(report.clips) == 2
    assert mounter.calls == [("mount", "/dev/sdb1"), ("unmount", str(camera.outbox.root))] and not mounter.mounted
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}


def test_udev_unknown_serial_ignored_with_log_line(camera, ingester, store, tmp_path, caplog):
    mounter = FolderMounter({"/dev/sdb1": camera.outbox.root})
    with caplog.at_level(logging.INFO):
        result = _handler(ingester, store, mounter, tmp_path).handle(UdevEvent("add", "/dev/sdb1", "BODYCAM", "cam-unknown"))
    assert result is None and mounter.calls == []
    assert "unknown device cam-unknown" in caplog.text


def test_udev_other_label_ignored_without_mount(camera, ingester, store, tmp_path):
    mounter = FolderMounter({"/dev/sdb1": camera.outbox.root})
    handler = _handler(ingester, store, mounter, tmp_path)
    assert handler.handle(UdevEvent("add", "/dev/sdb1", "USBSTICK", camera.device_id)) is None
    assert mounter.calls == []


def test_udev_serial_disagrees_with_signed_clips_refused_and_unmounted(store, ingester, tmp_path, caplog):
    a = new_camera(store, tmp_path / "a", "cam-a")
    new_camera(store, tmp_path / "b", "cam-b")
    clip = a.clip()
    mounter = FolderMounter({"/dev/sdb1": a.outbox.root})
    with caplog.at_level(logging.ERROR):
        assert _handler(ingester, store, mounter, tmp_path).handle(UdevEvent("add", "/dev/sdb1", "BODYCAM", "cam-b")) is None
    assert "the partition's serial is 'cam-b' but its clips are signed by cam-a" in caplog.text
    assert not mounter.mounted and outbox_clip_names(a.outbox) == [clip.clip_id]


def test_udev_mount_failure_logged_daemon_goes_on(camera, ingester, store, tmp_path, caplog):
    mounter = FolderMounter({})  # the device vanished before it could be mounted
    with caplog.at_level(logging.ERROR):
        handler = _handler(ingester, store, mounter, tmp_path)
        assert handler.handle(UdevEvent("add", "/dev/sdq1", "BODYCAM", camera.device_id)) is None
    assert "cannot mount /dev/sdq1" in caplog.text


def _umockdev_usable() -> str | None:
    if not shutil.which("umockdev-wrapper"):
        return "umockdev-wrapper is not installed (Debian package umockdev)"
    code = "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev"
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if probe.returncode != 0:
        return ("umockdev's Python bindings are missing (PyGObject and gir1.2-umockdev-1.0): "
                + probe.stderr.strip().splitlines()[-1])
    return None


def test_udev_umockdev_docked_camera_detected_and_ingested(camera, store, store_root, state_dir, tmp_path):
    why = _umockdev_usable()
    if why:
        pytest.skip(why)
    clips = [camera.clip(), camera.clip()]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(["umockdev-wrapper", sys.executable, "-m", "tests.dock._umockdev_dock", str(store_root),
                           str(camera.outbox.root), str(state_dir), camera.device_id],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["report"]["ok"] and out["report"]["counts"]["stored"] == 2
    # Hot-plug: the camera came through udev's monitor, not the start-up enumeration.
    assert ["live", "add", "/dev/sdz1", "BODYCAM", camera.device_id] in out["events"]
    assert not any(e[0] == "existing" and e[3] == "BODYCAM" for e in out["events"])
    assert "unknown device" not in proc.stderr  # the DATA disk is not a camera: no line per foreign disk
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert outbox_clip_names(camera.outbox) == []


def _loop_usable() -> str | None:
    if os.geteuid() != 0:
        return "loop devices and mount(8) need root"
    for tool in ("losetup", "mkfs.ext4", "mount", "umount"):
        if not shutil.which(tool):
            return f"{tool} is not installed"
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control in this environment"
    return None


@pytest.fixture
def loop_image(tmp_path):
    """Make ``(image, attach)``; detaches every loop device at the end."""
    attached = []

    def attach(source_dir: Path) -> str:
        image = tmp_path / "camera.img"
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "BODYCAM", "-d", str(source_dir), str(image), "16M"], check=True,
                       capture_output=True)
        proc = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"losetup refused here: {proc.stderr.strip()}")
        attached.append(proc.stdout.strip())
        return attached[-1]

    yield attach
    for dev in attached:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_udev_loop_mounted_ext4_camera_ingested_with_safe_options(camera, make_ingester, store, store_root, tmp_path, loop_image):
    why = _loop_usable()
    if why:
        pytest.skip(why)
    clips = [camera.clip(), camera.clip()]
    devnode = loop_image(camera.outbox.root)
    seen_options = []

    def fault(step, clip_id):
        if step == "scanned":  # the partition is mounted now: record its options
            for line in Path("/proc/mounts").read_text().splitlines():
                fields = line.split()
                if fields[0] == devnode:
                    seen_options.append(set(fields[3].split(",")))

    ingester = make_ingester(fault=fault)
    report = _handler(ingester, store, RealMounter(), tmp_path).handle(UdevEvent("add", devnode, "BODYCAM", camera.device_id))
    assert report is not None and report.ok, report and report.to_json()
    assert seen_options and {"rw", "nosuid", "nodev", "noexec"} <= seen_options[0]
    assert set(MOUNT_OPTIONS.split(",")) >= {"rw", "nosuid", "nodev", "noexec"}
    assert devnode not in Path("/proc/mounts").read_text()  # unmounted again
    assert set(stored_clips(store_root)) == {c.clip_id for c in clips}
    assert_store_sound(store_root)
    # What the camera finds on its partition afterwards: receipts, no clips.
    check = tmp_path / "check"
    check.mkdir()
    subprocess.run(["mount", "-o", "ro", devnode, str(check)], check=True)
    try:
        seen = Outbox(check)
        assert outbox_clip_names(seen) == [] and sorted(seen.receipt_ids()) == sorted(c.clip_id for c in clips)
        assert seen.clock(store.verifier_key).device_id == camera.device_id
    finally:
        subprocess.run(["umount", str(check)], check=True)


def test_udev_second_partition_claiming_a_docked_camera_ignored(camera, ingester, store, tmp_path, caplog):
    # While cam-07 is being ingested from /dev/sdb1, /dev/sdc1 appears with the same serial: it must
    # not mount over (or unmount) the camera's mount point under the running ingest.
    camera.clip()
    mounter = FolderMounter({"/dev/sdb1": camera.outbox.root, "/dev/sdc1": tmp_path / "copy"})
    results = []

    def ingest_and_meanwhile_plug_a_copy(path, expect_device):
        results.append(handler.handle(UdevEvent("add", "/dev/sdc1", "BODYCAM", camera.device_id)))
        return ingester.ingest(path, expect_device=expect_device)

    handler = DockingHandler(ingest=ingest_and_meanwhile_plug_a_copy, mounter=mounter,
                             enrolled=lambda: [d.device_id for d in store.devices()], label="BODYCAM",
                             mount_root=tmp_path / "mnt")
    with caplog.at_level(logging.WARNING):
        report = handler.handle(UdevEvent("add", "/dev/sdb1", "BODYCAM", camera.device_id))
    assert report.ok and results == [None]
    assert [c for c in mounter.calls if c[1] == "/dev/sdc1"] == []
    assert "/dev/sdc1 claims camera cam-07, which is already docked" in caplog.text
    # Once the first docking has ended, the same camera may dock again.
    assert handler.handle(UdevEvent("add", "/dev/sdb1", "BODYCAM", camera.device_id)) is not None
