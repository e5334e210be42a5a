"""Docking: hand the evidence partition to the dock over USB, and take it back.

On docking the recorder seals any clip and stops touching the outbox; only then is the partition
exposed as a USB mass-storage gadget (serial = device id), because a filesystem written from two
sides at once is corrupted. On undocking it takes the partition back and applies what the dock
left there: the enrollment (recipients, profile, officer), the dock's time, and receipts.

Trust: the outbox is writable by whoever holds the camera's USB port. So the store's verifier key
is pinned in the state folder at the first enrollment (trust on first use, at the city's own dock);
every later enrollment and every receipt must verify against the pinned key. A forged receipt
deletes nothing, and a receipt deletes a clip only if it names the manifest that is on the camera.
"""

from __future__ import annotations

import glob
import logging
import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import read_regular
from evidence_store.clip.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, manifest_hash
from evidence_store.clip.outbox import RECEIPTS_DIR, Enrollment, Outbox

from device.clock import CLOCK_DOCK, CLOCK_NTP, Clock
from device.errors import DeviceError, HardwareError, NotEnrolledError
from device.state import StateDir

log = logging.getLogger(__name__)

CONFIGFS_ROOT = Path("/sys/kernel/config/usb_gadget")
GADGET_NAME = "bodycam"
# The Linux Foundation's "multifunction composite gadget" ids, as the kernel's own examples use.
USB_VENDOR_ID = "0x1d6b"
USB_PRODUCT_ID = "0x0104"
FSCK_OK = (0, 1)  # fsck(8): 0 no errors, 1 errors corrected; 2 and up need a person
# A sysfs file says "docked" with one of these: power_supply/*/online "1", udc/*/state "configured".
DOCK_SIGNAL_ACTIVE = ("1", "configured")
DOCK_SIGNAL_INTERVAL = 0.25  # seconds between reads of the file(s)
DOCK_SIGNAL_SETTLE = 2  # equal reads in a row before a change counts: plugging in makes power bounce


# --- the USB gadget seam ------------------------------------------------------------------------

class UsbGadget(Protocol):
    def attach(self, serial: str) -> None:
        """Expose the evidence partition to the USB host. ``serial`` is the device id."""

    def detach(self) -> None:
        """Withdraw it from the host; afterwards the camera may use the outbox again."""


class FakeGadget:
    """Records the calls, for tests and ``simulate``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.attached_serial: str | None = None

    def attach(self, serial: str) -> None:
        self.calls.append(("attach", serial))
        self.attached_serial = serial

    def detach(self) -> None:
        self.calls.append(("detach",))
        self.attached_serial = None


class ConfigfsGadget:
    """A mass-storage gadget through the kernel's configfs (needs root and a UDC: Pi Zero/4/5).

    ``partition`` is the block device holding the outbox filesystem, ``mountpoint`` where the
    camera mounts it. The filesystem is unmounted before the host sees it and checked and mounted
    again after the host lets go: the kernel's FAT/ext4 code must never share it with a host.
    """

    def __init__(self, partition: str, mountpoint: str | os.PathLike, *, root: Path = CONFIGFS_ROOT,
                 name: str = GADGET_NAME, udc: str | None = None, run=subprocess.run):
        self.partition = partition
        self.mountpoint = str(mountpoint)
        self.base = root / name
        self.udc = udc
        self._run = run

    def _write(self, path: Path, value: str) -> None:
        path.write_text(value + "\n" if value else "\n")

    def _cmd(self, *argv: str, ok: tuple[int, ...] = (0,)) -> None:
        result = self._run(list(argv), capture_output=True, text=True)
        if result.returncode not in ok:
            raise HardwareError(f"{' '.join(argv)} failed (exit {result.returncode}): {result.stderr.strip()}")

    def attach(self, serial: str) -> None:
        try:
            os.sync()
            self._cmd("umount", self.mountpoint)
            strings = self.base / "strings" / "0x409"
            lun = self.base / "functions" / "mass_storage.usb0" / "lun.0"
            config = self.base / "configs" / "c.1"
            # In real configfs lun.0 appears with its function; the mkdir is then a no-op.
            for folder in (self.base, strings, lun.parent, lun, config / "strings" / "0x409"):
                folder.mkdir(parents=True, exist_ok=True)
            self._write(self.base / "idVendor", USB_VENDOR_ID)
            self._write(self.base / "idProduct", USB_PRODUCT_ID)
            self._write(strings / "serialnumber", serial)
            self._write(strings / "manufacturer", "bodycam")
            self._write(strings / "product", "bodycam evidence partition")
            self._write(lun / "removable", "1")
            self._write(lun / "file", self.partition)
            link = config / "mass_storage.usb0"
            if not link.exists():
                link.symlink_to(lun.parent)
            udc = self.udc or sorted(os.listdir("/sys/class/udc"))[0]
            self._write(self.base / "UDC", udc)
        except (OSError, IndexError) as exc:
            raise HardwareError(f"cannot expose the evidence partition over USB: {exc}") from exc

    def detach(self) -> None:
        try:
            if (self.base / "UDC").exists():
                self._write(self.base / "UDC", "")
            lun = self.base / "functions" / "mass_storage.usb0" / "lun.0"
            if lun.exists():
                self._write(lun / "file", "")
            # fsck's exit code 1 means "errors corrected": the filesystem is fine now (fsck(8)).
            self._cmd("fsck", "-p", self.partition, ok=FSCK_OK)
            self._cmd("mount", "-o", "nosuid,nodev,noexec", self.partition, self.mountpoint)
        except OSError as exc:
            raise HardwareError(f"cannot take the evidence partition back from USB: {exc}") from exc


# --- the USB-power dock signal -------------------------------------------------------------------

class PowerDockSignal:
    """The dock signal read from sysfs, for docks without the GPIO contact: the camera counts as
    docked while any file matching ``pattern`` (a glob, e.g. ``/sys/class/power_supply/*/online``
    or ``/sys/class/udc/*/state``) reads "1" or "configured".

    Read at most every ``interval`` seconds of ``now`` (the injected clock), and a change is only
    taken after ``settle`` equal reads in a row. An unreadable file counts as "not docked" (logged
    once). Called on the controller's thread only (``Controller(dock_signal=...)``).
    """

    def __init__(self, pattern: str | os.PathLike, *, interval: float = DOCK_SIGNAL_INTERVAL,
                 settle: int = DOCK_SIGNAL_SETTLE):
        self.pattern = str(pattern)
        self._interval = interval
        self._settle = max(1, settle)
        self._next: float | None = None
        self._level = False
        self._candidate = False
        self._seen = 0
        self._warned = False

    def _read(self) -> bool:
        paths = sorted(glob.glob(self.pattern))
        if not paths and not self._warned:
            log.warning("dock signal: nothing matches %s", self.pattern)
            self._warned = True
        for path in paths:
            try:
                if Path(path).read_text().strip() in DOCK_SIGNAL_ACTIVE:
                    return True
            except OSError as exc:
                if not self._warned:
                    log.warning("dock signal: cannot read %s: %s", path, exc)
                    self._warned = True
        return False

    def docked(self, now: float) -> bool:
        if self._next is not None and now < self._next:
            return self._level
        self._next = now + self._interval
        reading = self._read()
        if reading == self._level:
            self._seen = 0
            return self._level
        self._seen = self._seen + 1 if reading == self._candidate else 1
        self._candidate = reading
        if self._seen >= self._settle:
            log.info("dock signal (%s): %s", self.pattern, "docked" if reading else "undocked")
            self._level, self._seen = reading, 0
        return self._level


# --- the dock's time ----------------------------------------------------------------------------

class DockClock:
    """A Clock whose wall time the dock can set (the Pi has no battery clock).

    Durations stay on ``base.monotonic()``; only an offset for ``now()`` changes. The dock's time
    is taken unless the base clock is synchronised by NTP, which is better.
    """

    def __init__(self, base: Clock):
        self._base = base
        self._offset: timedelta | None = None
        self._source: str | None = None

    @property
    def clock_source(self) -> str:
        return self._source or self._base.clock_source

    def monotonic(self) -> float:
        return self._base.monotonic()

    def now(self) -> datetime:
        return self._base.now() + self._offset if self._offset is not None else self._base.now()

    def set_wall(self, moment: datetime, source: str = CLOCK_DOCK) -> bool:
        """Take ``moment`` as the time now. False (and nothing changes) if NTP knows better."""
        if self._base.clock_source == CLOCK_NTP:
            return False
        self._offset = moment - self._base.now()
        self._source = source
        return True


# --- enrollment and receipts --------------------------------------------------------------------

def load_enrollment(outbox: Outbox, state: StateDir, device_id: str, public_key: str) -> Enrollment | None:
    """The outbox's enrollment, verified: against the pinned store key, or at the first
    enrollment against the key it names (which is then pinned). None if there is none.

    Raises NotEnrolledError if the record is forged, for another device, or unreadable.
    """
    pinned = state.pinned_key()
    try:
        enrollment = outbox.enrollment(pinned)
    except ClipError as exc:
        raise NotEnrolledError(f"the enrollment record is not valid: {exc}",
                               "hint: dock the camera at the city's dock to enroll it again") from exc
    if enrollment is None:
        return None
    if enrollment.device_id != device_id or enrollment.device_public_key != public_key:
        raise NotEnrolledError(f"the enrollment record is for device {enrollment.device_id}, not this camera",
                               "hint: enroll this camera with bodycam-dock enroll")
    if pinned is None:
        state.pin_key(enrollment.verifier_key)
        log.info("pinned the store's verifier key %s", enrollment.verifier_key.split("+")[0])
    return enrollment


@dataclass
class UndockReport:
    enrolled: bool = False
    clock_set: datetime | None = None
    deleted: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)  # (clip id, why the receipt did not count)


def _manifest_sha256(outbox: Outbox, clip_id: str) -> str | None:
    try:
        return manifest_hash(read_regular(outbox.clip_dir(clip_id) / MANIFEST_FILE, MAX_MANIFEST_BYTES))
    except FileNotFoundError:
        return None


def delete_receipted(outbox: Outbox, state: StateDir, device_id: str) -> UndockReport:
    """Delete every clip that has a valid store-signed receipt naming the manifest on the camera.

    A receipt that fails (no pinned key, bad signature, another device, another manifest, clip
    not sealed) deletes nothing and is left for the dock to look at. Never raises for a receipt.
    """
    report = UndockReport()
    pinned = state.pinned_key()
    for clip_id in outbox.receipt_ids():
        if pinned is None:
            report.kept.append((clip_id, "no store key pinned yet"))
            continue
        try:
            receipt = outbox.receipt(clip_id, pinned)
        except ClipError as exc:
            log.warning("receipt for %s is not valid, the clip is kept: %s", clip_id, exc)
            report.kept.append((clip_id, f"receipt not valid: {exc}"))
            continue
        if receipt is None:
            continue
        if receipt.device_id != device_id:
            report.kept.append((clip_id, f"receipt is for device {receipt.device_id}"))
            continue
        present = outbox.clip_dir(clip_id).exists()
        on_camera = _manifest_sha256(outbox, clip_id)
        if present and on_camera != receipt.manifest_sha256:
            # Never delete what the store has not got: an unsealed clip, or a manifest other than
            # the one the store received (e.g. a quarantined copy that claimed this clip's id).
            report.kept.append((clip_id, "receipt names another manifest than the one on the camera"))
            continue
        if present:
            outbox.delete_clip(clip_id)
            report.deleted.append(clip_id)
            log.info("deleted clip %s: the store has it (%s)", clip_id, receipt.status)
        # The receipt has done its work; the dock would only read it again.
        (outbox.root / RECEIPTS_DIR / clip_id).unlink(missing_ok=True)
    return report


def apply_undock(outbox: Outbox, state: StateDir, device_id: str, public_key: str,
                 clock: DockClock | None, docked_at: float | None) -> tuple[Enrollment | None, UndockReport]:
    """After the host let go of the partition: enrollment, clock, receipts (in that order, so
    that a first enrollment pins the key the receipts are then checked with)."""
    enrollment = load_enrollment(outbox, state, device_id, public_key)
    try:
        stamp = outbox.clock()
    except ClipError as exc:
        log.warning("ignoring the dock's clock record: %s", exc)
        stamp = None
    report = delete_receipted(outbox, state, device_id)
    report.enrolled = enrollment is not None
    if stamp is not None and clock is not None:
        moment, _source = stamp
        # The dock wrote its time when the camera was docked; the camera's monotonic clock has
        # measured how long ago that was.
        elapsed = clock.monotonic() - docked_at if docked_at is not None else 0.0
        if clock.set_wall(moment + timedelta(seconds=max(0.0, elapsed))):
            report.clock_set = clock.now()
            log.info("clock set from the dock: %s", report.clock_set.isoformat())
    return enrollment, report


def check_enrolled(enrollment: Enrollment | None) -> Enrollment:
    if enrollment is None:
        raise NotEnrolledError("this camera is not enrolled", "hint: run bodycam-dock enroll OUTBOX --device-id ID")
    return enrollment


__all__ = ["UsbGadget", "FakeGadget", "ConfigfsGadget", "PowerDockSignal", "DockClock", "load_enrollment", "delete_receipted",
           "apply_undock", "UndockReport", "DeviceError"]
