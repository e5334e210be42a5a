"""Docking: seal, hand the partition over as a USB gadget, take it back, apply what the dock left;
only genuine receipts for the manifest on the camera delete anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from device.clock import DockClock
from device.docking import ConfigfsGadget, PowerDockSignal
from device.errors import HardwareError
from device.recorder_api import Trigger
from evidence_store.clip import note
from evidence_store.clip.manifest import MANIFEST_FILE, manifest_hash
from evidence_store.clip.outbox import Profile, Receipt
from tests.device._kit import DEVICE_ID, clip_dirs, make_camera
from tests.device.fakes import FakeGadget
from tests.device.test_recorder import make_recorder, record


def sealed_clip(tmp_path, clock, **kw):
    cam = make_camera(tmp_path)
    gadget = FakeGadget()
    recorder, camera = make_recorder(cam, clock, gadget=gadget, **kw)
    manifest = record(recorder, camera, clock, 0.4)
    return cam, recorder, gadget, manifest


def receipt_for(cam, manifest, signer, manifest_sha=None, device_id=DEVICE_ID):
    data = (cam.outbox / "clips" / manifest.clip_id / MANIFEST_FILE).read_bytes()
    receipt = Receipt(manifest.clip_id, device_id, manifest_sha or manifest_hash(data), "stored",
                      "2024-05-01T11:00:00.000Z")
    cam.box.write_receipt(manifest.clip_id, receipt.sign(signer))


def test_dock_gadget_serial_is_device_id_and_undock_detaches(tmp_path, clock):
    cam, recorder, gadget, _ = sealed_clip(tmp_path, clock)
    recorder.dock()
    assert gadget.calls == [("attach", DEVICE_ID)]
    assert recorder.can_start() == "docked"
    recorder.undock()
    assert gadget.calls[-1] == ("detach",) and recorder.can_start() is None


def test_dock_while_recording_seals_first(tmp_path, clock):
    cam = make_camera(tmp_path)
    gadget = FakeGadget()
    recorder, camera = make_recorder(cam, clock, gadget=gadget)
    recorder.start(Trigger("emergency", None, clock.now()))
    camera.produce(5)
    recorder.dock()
    assert recorder.last_sealed.end_reason == "docked" and gadget.attached_serial == DEVICE_ID


def test_undock_valid_receipt_deletes_clip(tmp_path, clock):
    cam, recorder, gadget, manifest = sealed_clip(tmp_path, clock)
    recorder.dock()
    receipt_for(cam, manifest, cam.signer)
    recorder.undock()
    assert clip_dirs(cam.outbox) == [] and cam.box.receipt_ids() == []
    assert recorder.last_undock.deleted == [manifest.clip_id]


def test_undock_forged_receipt_deletes_nothing(tmp_path, clock):
    cam, recorder, gadget, manifest = sealed_clip(tmp_path, clock)
    recorder.dock()
    receipt_for(cam, manifest, note.generate_signer("bodycam-store"))  # same name, another key
    recorder.undock()
    assert [p.name for p in clip_dirs(cam.outbox)] == [manifest.clip_id]
    assert recorder.last_undock.deleted == [] and "not valid" in recorder.last_undock.kept[0][1]


def test_undock_receipt_for_other_manifest_keeps_clip(tmp_path, clock):
    cam, recorder, gadget, manifest = sealed_clip(tmp_path, clock)
    recorder.dock()
    receipt_for(cam, manifest, cam.signer, manifest_sha="0" * 64)
    recorder.undock()
    assert [p.name for p in clip_dirs(cam.outbox)] == [manifest.clip_id]


def test_undock_unsealed_clip_never_deleted(tmp_path, clock):
    # A receipt that is valid in every way (pinned store key, this device, the hash of the
    # manifest the clip had) still deletes nothing once the clip on the camera is unsealed.
    cam, recorder, gadget, manifest = sealed_clip(tmp_path, clock)
    recorder.dock()
    receipt_for(cam, manifest, cam.signer)
    (cam.outbox / "clips" / manifest.clip_id / MANIFEST_FILE).unlink()
    recorder.undock()
    assert [p.name for p in clip_dirs(cam.outbox)] == [manifest.clip_id]
    assert recorder.last_undock.deleted == []
    assert recorder.last_undock.kept == [(manifest.clip_id, "receipt names another manifest than the one on the camera")]


def test_undock_enrollment_signed_by_other_key_not_applied(tmp_path, clock):
    cam, recorder, gadget, _ = sealed_clip(tmp_path, clock)
    recorder.dock()
    cam.enroll(Profile("BW", prerecord_max_seconds=60), signer=note.generate_signer("bodycam-store"),
               officer="INTRUDER")
    recorder.undock()
    assert recorder.enrollment.officer == "PK-1001" and recorder.enrollment.profile.name == "NRW"
    assert recorder._prerecord is None


def test_undock_new_enrollment_by_pinned_key_applied(tmp_path, clock):
    cam, recorder, gadget, _ = sealed_clip(tmp_path, clock)
    recorder.dock()
    cam.enroll(officer="PK-2002")
    recorder.undock()
    assert recorder.enrollment.officer == "PK-2002"


def test_undock_sets_clock_from_dock(tmp_path, clock):
    cam = make_camera(tmp_path)
    dock_clock = DockClock(clock)
    recorder, camera = make_recorder(cam, dock_clock, gadget=FakeGadget())
    recorder.dock()
    dock_time = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    cam.stamp_clock(dock_time)
    clock.advance(10)
    recorder.undock()
    assert abs((dock_clock.now() - (dock_time + timedelta(seconds=10))).total_seconds()) < 0.01
    assert dock_clock.clock_source == "dock"


def test_configfs_gadget_writes_serial_and_unmounts(tmp_path):
    commands = []

    def run(argv, **kw):
        commands.append(argv)
        return SimpleNamespace(returncode=0, stderr="")
    gadget = ConfigfsGadget("/dev/mmcblk0p3", "/srv/bodycam/outbox", root=tmp_path, udc="fe980000.usb", run=run)
    gadget.attach(DEVICE_ID)
    base = tmp_path / "bodycam"
    assert (base / "strings/0x409/serialnumber").read_text().strip() == DEVICE_ID
    assert (base / "functions/mass_storage.usb0/lun.0/file").read_text().strip() == "/dev/mmcblk0p3"
    assert (base / "UDC").read_text().strip() == "fe980000.usb"
    assert commands[0] == ["umount", "/srv/bodycam/outbox"]
    gadget.detach()
    assert (base / "UDC").read_text().strip() == ""
    assert commands[-1][0] == "mount"


def fsck_gadget(tmp_path, fsck_code):
    commands = []

    def run(argv, **kw):
        commands.append(argv)
        code = fsck_code if argv[0] == "fsck" else 0
        return SimpleNamespace(returncode=code, stderr="" if code in (0, 1) else "UNEXPECTED INCONSISTENCY")
    gadget = ConfigfsGadget("/dev/mmcblk0p3", "/srv/bodycam/outbox", root=tmp_path, udc="fe980000.usb", run=run)
    gadget.attach(DEVICE_ID)
    return gadget, commands


def test_configfs_gadget_detach_fsck_corrected_errors_mounts(tmp_path):
    gadget, commands = fsck_gadget(tmp_path, fsck_code=1)  # 1: errors found and corrected
    gadget.detach()
    assert commands[-1][0] == "mount"


def test_configfs_gadget_detach_fsck_uncorrected_raises_no_mount(tmp_path):
    gadget, commands = fsck_gadget(tmp_path, fsck_code=4)
    with pytest.raises(HardwareError, match="exit 4"):
        gadget.detach()
    assert [c[0] for c in commands][-1] == "fsck"


def test_recorder_undock_detach_failure_stays_docked(tmp_path, clock):
    class FailingGadget(FakeGadget):
        def detach(self):
            super().detach()
            raise HardwareError("cannot take the evidence partition back from USB: fsck failed")

    cam = make_camera(tmp_path)
    recorder, camera = make_recorder(cam, clock, gadget=FailingGadget())
    recorder.dock()
    with pytest.raises(HardwareError):
        recorder.undock()
    assert recorder.can_start() == "docked"  # the controller keeps showing DOCKED and retries


def test_power_dock_signal_reads_sysfs_folder_and_settles(tmp_path):
    online = tmp_path / "power_supply" / "usb" / "online"
    online.parent.mkdir(parents=True)
    (tmp_path / "power_supply" / "battery").mkdir()
    online.write_text("0\n")
    signal = PowerDockSignal(tmp_path / "power_supply" / "*" / "online", interval=0.25, settle=2)
    assert signal.docked(0.0) is False
    online.write_text("1\n")
    assert signal.docked(0.1) is False  # not read again before the interval
    assert signal.docked(0.25) is False  # one reading is not yet a change (power bounces)
    assert signal.docked(0.5) is True
    online.write_text("0\n")
    signal.docked(0.75)
    online.write_text("1\n")  # a bounce: back before it settled
    assert signal.docked(1.0) is True


def test_power_dock_signal_udc_configured_and_missing_files(tmp_path):
    state = tmp_path / "udc" / "fe980000.usb" / "state"
    signal = PowerDockSignal(tmp_path / "udc" / "*" / "state", interval=0.25, settle=1)
    assert signal.docked(0.0) is False  # nothing there (yet): not docked, no error
    state.parent.mkdir(parents=True)
    state.write_text("configured\n")
    assert signal.docked(0.25) is True
    state.write_text("not attached\n")
    assert signal.docked(0.5) is False
