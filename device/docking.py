"""Docking: hand the evidence partition to the dock over USB, and take it back.

On docking the recorder seals any clip and stops touching the outbox; only then is the partition
exposed as a USB mass-storage gadget (serial = device id), because a filesystem written from two
sides at once is corrupted. On undocking it takes the partition back and applies what the dock
left there: the enrollment (recipients, profile, officer), the dock's time, and receipts.

Trust: the outbox is writable by whoever holds the camera's USB port. So the store's verifier key
is pinned in the state folder at the first enrollment (trust on first use, at the city's own dock);
every later enrollment, every clock note and every receipt must verify against the pinned key. A
forged receipt deletes nothing, and a receipt deletes a clip only if it names the manifest that is
on the camera. A signed time is still checked for plausibility (device.clock.check_dock_time).

Privilege separation: exposing the partition needs root (umount, fsck, configfs, mount); the
firmware does not run as root. ``RequestedGadget`` (the firmware's side) writes a request file;
systemd's ``bodycam-gadget.path`` starts ``bodycam-gadget.service``, which runs
``bodycam-device gadget`` as root: ``serve_gadget_requests`` performs the request with a
``ConfigfsGadget`` built from root's configuration and writes the answer to a state file. The
request says only attach (with the serial) or detach; which block device and which mountpoint is
never the firmware's to choose. The exchange, in the folder ``dock.helper_dir``::

    request    "<id> attach <serial>" or "<id> detach"        written by the firmware
    state      "<id> attached" / "<id> detached" / "<id> error: <one line>"   written by the helper

Both are replaced atomically; ``<id>`` is fresh per request, so an answer to an earlier request
(a timed-out one, or one from before a restart) is never taken for the answer to this one.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from device.clock import DockClock, check_dock_time
from device.errors import DeviceError, HardwareError, NotEnrolledError
from device.state import StateDir
from evidence_store.clip.clock import CLOCK_DOCK, CLOCK_NTP, CLOCK_RTC, Clock
from evidence_store.clip.errors import ClipError
from evidence_store.clip.fsutil import atomic_write, read_regular
from evidence_store.clip.ids import DEVICE_ID_RE, format_time
from evidence_store.clip.manifest import MANIFEST_FILE, MAX_MANIFEST_BYTES, manifest_hash
from evidence_store.clip.outbox import CLOCK_FILE, ENROLLMENT_FILE, RECEIPTS_DIR, Enrollment, Outbox

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

# The exchange with the privileged helper (bodycam-gadget.service); see the module docstring.
GADGET_HELPER_DIR = Path("/run/bodycam-device/gadget")
GADGET_REQUEST_FILE = "request"
GADGET_STATE_FILE = "state"
GADGET_ATTACH, GADGET_DETACH = "attach", "detach"
GADGET_ATTACHED, GADGET_DETACHED, GADGET_ERROR = "attached", "detached", "error:"
GADGET_TIMEOUT = 60.0  # seconds; fsck of a large partition after a long docking takes a while
GADGET_POLL_INTERVAL = 0.25  # seconds between reads of the state file
GADGET_MAX_FILE = 4096  # bytes; both files are one short line
GADGET_MAX_REASON = 300  # characters of an error answer: one line for the journal and the LEDs' log
REQUEST_ID_RE = re.compile(r"^[0-9a-f]{16}\Z")
# The helper's folder is shared by the firmware's user and the helper's group (root is in the
# firmware's group there, so it needs no CAP_DAC_OVERRIDE to use it); nobody else may look in.
GADGET_DIR_MODE = 0o770
GADGET_FILE_MODE = 0o640
# Clock sources whose time the camera counts as known (an unsynchronised Pi clock is not).
TRUSTED_SOURCES = (CLOCK_DOCK, CLOCK_NTP, CLOCK_RTC)


# --- the USB gadget seam ------------------------------------------------------------------------

class UsbGadget(Protocol):
    def attach(self, serial: str) -> None:
        """Expose the evidence partition to the USB host. ``serial`` is the device id."""

    def detach(self) -> None:
        """Withdraw it from the host; afterwards the camera may use the outbox again."""


class GadgetRequestError(DeviceError, ValueError):
    """The helper's request file is malformed: it cannot be answered (exit code 3, a bad file)."""

    exit_code = 3


def one_line(text: str, limit: int = GADGET_MAX_REASON) -> str:
    """``text`` squeezed onto one line (fsck's stderr has many) and cut to ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _read_small(path: Path) -> str | None:
    """The text of a small regular file (never a link or fifo); None if it does not exist."""
    try:
        return read_regular(path, GADGET_MAX_FILE).decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def parse_gadget_request(text: str) -> tuple[str, str, str | None]:
    """``"<id> attach <serial>"`` or ``"<id> detach"`` -> (id, action, serial or None).

    Raises GadgetRequestError (one line) for anything else; the serial must be a device id.
    """
    words = text.split()
    if not words or not REQUEST_ID_RE.match(words[0]):
        raise GadgetRequestError(f"gadget request: no valid request id in {one_line(text, 80)!r}")
    if words[1:2] == [GADGET_ATTACH] and len(words) == 3 and DEVICE_ID_RE.match(words[2]):
        return words[0], GADGET_ATTACH, words[2]
    if words[1:] == [GADGET_DETACH]:
        return words[0], GADGET_DETACH, None
    raise GadgetRequestError(f"gadget request {words[0]}: expected 'attach SERIAL' or 'detach', "
                             f"got {one_line(' '.join(words[1:]), 80)!r}")


class RequestedGadget:
    """The firmware's side of the privileged helper: a UsbGadget that asks, and waits for, it.

    Each call writes a request with a fresh id to ``folder``/request and polls ``folder``/state
    (every ``interval`` s of ``monotonic``, sleeping with ``sleep``) until it names that id, for at
    most ``timeout`` s. ``keepalive`` (e.g. the systemd watchdog ping) is called on every poll: the
    wait is bounded, so a hung helper still ends in an error, not in a killed firmware. Raises
    HardwareError with a one-line reason if the helper answers an error or does not answer.
    Called on the controller's thread only.
    """

    def __init__(self, folder: str | os.PathLike = GADGET_HELPER_DIR, *, timeout: float = GADGET_TIMEOUT,
                 interval: float = GADGET_POLL_INTERVAL, monotonic=time.monotonic, sleep=time.sleep,
                 keepalive=None, new_id=lambda: os.urandom(8).hex()):
        self.folder = Path(folder)
        self._timeout = timeout
        self._interval = interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._keepalive = keepalive
        self._new_id = new_id

    def attach(self, serial: str) -> None:
        self._ask(f"{GADGET_ATTACH} {serial}", GADGET_ATTACHED)

    def detach(self) -> None:
        self._ask(GADGET_DETACH, GADGET_DETACHED)

    def _ask(self, command: str, expected: str) -> None:
        action = command.split()[0]
        request_id = self._new_id()
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True)
                os.chmod(self.folder, GADGET_DIR_MODE)  # past the umask: the helper's group writes here
            atomic_write(self.folder / GADGET_REQUEST_FILE, f"{request_id} {command}\n".encode(),
                         mode=GADGET_FILE_MODE)
        except OSError as exc:
            raise HardwareError(f"cannot ask the gadget helper to {action}: {exc}") from exc
        log.info("asked the gadget helper to %s (request %s)", action, request_id)
        deadline = self._monotonic() + self._timeout
        while True:
            answer = self._answer(request_id)
            if answer is not None:
                if answer == expected:
                    return
                reason = (answer[len(GADGET_ERROR):] if answer.startswith(GADGET_ERROR)
                          else f"unexpected answer {answer!r}")
                raise HardwareError(f"gadget helper could not {action}: {one_line(reason)}")
            if self._monotonic() >= deadline:
                raise HardwareError(f"gadget helper did not answer the {action} request within {self._timeout:g} s",
                                    "hint: systemctl status bodycam-gadget.path bodycam-gadget.service")
            if self._keepalive is not None:
                self._keepalive()
            self._sleep(self._interval)

    def _answer(self, request_id: str) -> str | None:
        """The state file's answer if it is for ``request_id``; None for none yet or a stale one."""
        try:
            text = _read_small(self.folder / GADGET_STATE_FILE)
        except (OSError, ClipError) as exc:
            log.debug("gadget state not readable yet: %s", exc)
            return None
        if text is None:
            return None
        found_id, _, answer = text.strip().partition(" ")
        return answer.strip() if found_id == request_id else None


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

    def _check_unused(self) -> None:
        """Refuse to expose a partition that is still mounted anywhere: an exclusive open of a
        block device fails (EBUSY) while any mount namespace (a service's private one, say) still
        holds its filesystem, and the kernel's file system code must never share it with a host.
        A missing device is left to the kernel to report when lun.0/file is written."""
        try:
            fd = os.open(self.partition, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise HardwareError(f"{self.partition} is still mounted after umount {self.mountpoint} "
                                    "(held by another mount namespace or process): not exposing it") from None
            raise
        os.close(fd)

    def attach(self, serial: str) -> None:
        try:
            os.sync()
            self._cmd("umount", self.mountpoint)
            self._check_unused()
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


def exposed_partition(root: Path = CONFIGFS_ROOT, name: str = GADGET_NAME) -> str | None:
    """The block device our gadget currently exposes (what an earlier attach wrote), or None."""
    try:
        text = (root / name / "functions" / "mass_storage.usb0" / "lun.0" / "file").read_text().strip()
    except OSError:
        return None
    return text or None


def _answered_id(folder: Path) -> str | None:
    try:
        text = _read_small(folder / GADGET_STATE_FILE)
    except (OSError, ClipError):
        return None
    return text.split()[0] if text and text.split() else None


def serve_gadget_requests(folder: str | os.PathLike, make_gadget) -> int:
    """The helper's side: answer the request in ``folder`` (and any that replaced it meanwhile).

    ``make_gadget(action)`` returns the UsbGadget to use (a ConfigfsGadget, as root). The outcome
    goes atomically to ``folder``/state, "<id> attached|detached|error: <one line>". A failed
    attach or detach is an *answered* request: it is logged and the firmware reports it; returns
    the number of requests answered. Raises GadgetRequestError for a missing or malformed request
    (nothing can be answered without an id). Runs as one oneshot process: no threads.
    """
    folder = Path(folder)
    answered: set[str] = set()
    while True:
        # systemd's path unit does not start the service again for a request written while it
        # runs (a firmware that timed out and asked again): look once more before exiting.
        try:
            text = _read_small(folder / GADGET_REQUEST_FILE)
        except (OSError, ClipError) as exc:
            raise GadgetRequestError(f"gadget request: cannot read {folder / GADGET_REQUEST_FILE}: {exc}") from None
        if text is None:
            if answered:
                return len(answered)
            raise GadgetRequestError(f"gadget request: {folder / GADGET_REQUEST_FILE} does not exist")
        request_id, action, serial = parse_gadget_request(text)
        if request_id in answered or _answered_id(folder) == request_id:
            # Answered already (by this run, or by an earlier one that a spurious path event
            # follows): doing it twice would mount a mounted partition and overwrite the answer.
            return len(answered)
        try:
            gadget = make_gadget(action)
            if action == GADGET_ATTACH:
                gadget.attach(serial)
                outcome = GADGET_ATTACHED
            else:
                gadget.detach()
                outcome = GADGET_DETACHED
            log.info("gadget request %s: %s", request_id, outcome)
        except DeviceError as exc:
            outcome = f"{GADGET_ERROR} {one_line(str(exc))}"
            log.error("gadget request %s (%s) failed: %s", request_id, action, one_line(str(exc)))
        try:
            atomic_write(folder / GADGET_STATE_FILE, f"{request_id} {outcome}\n".encode(), mode=GADGET_FILE_MODE)
        except OSError as exc:
            raise HardwareError(f"gadget request {request_id}: cannot write the answer ({outcome}): {exc}") from None
        answered.add(request_id)


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


# --- enrollment, clock and receipts: what the store signed --------------------------------------
#
# Whoever holds the USB cable can write these files. None of them may stop the camera from
# recording: a record that fails is set aside (renamed to a hidden ``.<name>.rejected``) with one
# log line, and the last good one stays in force.

def _set_aside(outbox: Outbox, name: str) -> str:
    """Set the refused record ``name`` aside; returns where it went, for the one log line."""
    try:
        return outbox.set_aside(name) or "(gone)"
    except OSError as exc:
        return f"(could not be set aside: {exc.strerror or exc})"


def _open_enrollment(data: bytes, pinned: str | None, device_id: str, public_key: str) -> Enrollment:
    """Verify an enrollment note for this camera; ClipError or NotEnrolledError say why not."""
    enrollment = Enrollment.open(data, pinned)
    if enrollment.device_id != device_id or enrollment.device_public_key != public_key:
        raise NotEnrolledError(f"it is for device {enrollment.device_id} with another key, not this camera")
    return enrollment


def load_enrollment(outbox: Outbox, state: StateDir, device_id: str, public_key: str) -> Enrollment | None:
    """The enrollment in force: the outbox's, verified against the pinned store key (at the first
    enrollment against the key it names, which is then pinned), and kept in the state folder as
    the last good one; or, if the outbox's is missing or refused, that last good one.

    A refused record (forged, damaged, for another device, or older than the last good one: a
    replayed note could bring back a revoked recipient) is set aside with one log line. Returns
    None only if no good enrollment was ever seen. Never raises for what is on the partition.
    """
    pinned = state.pinned_key()
    kept = None
    data = state.enrollment_copy()
    if data is not None and pinned is not None:
        try:
            kept = _open_enrollment(data, pinned, device_id, public_key)
        except (ClipError, NotEnrolledError) as exc:
            log.error("the kept enrollment in the state folder is not valid, ignored: %s", exc)
    try:
        data = outbox.read_record(ENROLLMENT_FILE)
        if data is None:
            return kept
        enrollment = _open_enrollment(data, pinned, device_id, public_key)
        if kept is not None and enrollment.issued_at < kept.issued_at:
            raise NotEnrolledError(f"issued {enrollment.issued_at}, before the one in force ({kept.issued_at})")
    except (ClipError, NotEnrolledError, OSError) as exc:
        where = _set_aside(outbox, ENROLLMENT_FILE)
        log.warning("enrollment refused and set aside as %s (%s); %s", where, exc,
                    "the last good one stays in force" if kept else "the camera stays unenrolled")
        return kept
    if pinned is None:
        state.pin_key(enrollment.verifier_key)
        log.info("pinned the store's verifier key %s", enrollment.verifier_key.split("+")[0])
    try:
        state.keep_enrollment(data)
    except OSError as exc:
        log.error("cannot keep the enrollment in the state folder: %s", exc)
    return enrollment


def apply_clock(outbox: Outbox, state: StateDir, device_id: str, clock: DockClock,
                docked_at: float | None) -> datetime | None:
    """Take the dock's time from the outbox's clock note if the store signed it for this camera,
    it is later than the last one taken, and it is plausible (clock.check_dock_time). Returns the
    time set, or None (no note, refused, or NTP knows better). A refused note is set aside with
    one log line; the camera keeps its own clock. Never raises for what is on the partition.
    """
    pinned = state.pinned_key()
    last_stamp, last_known = state.clock_record()
    try:
        if pinned is None:
            if outbox.read_record(CLOCK_FILE) is None:
                return None
            raise ClipError("no store key is pinned yet to check it with")
        stamp = outbox.clock(pinned)
        if stamp is None:
            return None
        if stamp.device_id != device_id:
            raise ClipError(f"it is for device {stamp.device_id}")
        if last_stamp is not None and stamp.moment == last_stamp:
            log.debug("the dock's clock note was taken before")
            return None
        # The dock wrote its time when the camera was docked; the camera's monotonic clock has
        # measured how long ago that was.
        elapsed = clock.monotonic() - docked_at if docked_at is not None else 0.0
        moment = stamp.moment + timedelta(seconds=max(0.0, elapsed))
        own = clock.now() if clock.clock_source in TRUSTED_SOURCES else None
        known = max((t for t in (own, last_known) if t is not None), default=None)
        why = check_dock_time(moment, known)
        if why is not None:
            raise ClipError(why)
        if last_stamp is not None and stamp.moment < last_stamp:
            raise ClipError(f"it is older than the last one taken ({format_time(last_stamp)}): a replayed copy")
    except (ClipError, OSError) as exc:
        where = _set_aside(outbox, CLOCK_FILE)
        log.warning("the dock's time refused and set aside as %s (%s); the camera keeps its own clock "
                    "(%s, %s)", where, exc, clock.clock_source, format_time(clock.now()))
        return None
    applied = clock.set_wall(moment)
    try:
        state.write_clock_record(stamp.moment, max(moment, known) if known else moment)
    except OSError as exc:
        log.error("cannot write the clock record to the state folder: %s", exc)
    if not applied:
        log.info("the dock's time %s is not taken: the system clock is synchronised by NTP", format_time(moment))
        return None
    log.info("clock set from the dock: %s", format_time(clock.now()))
    return clock.now()


def remember_time(state: StateDir, clock: Clock) -> None:
    """Record the camera's time as its last known one (at docking), if its clock has a source
    (a dock time refused later is checked against it). Never raises."""
    if clock.clock_source not in TRUSTED_SOURCES:
        return
    last_stamp, last_known = state.clock_record()
    now = clock.now()
    if last_known is None or now > last_known:
        try:
            state.write_clock_record(last_stamp, now)
        except OSError as exc:
            log.error("cannot write the clock record to the state folder: %s", exc)


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

    A receipt that is not valid (bad signature, damaged, a link or folder, for another device) is
    set aside with one log line and deletes nothing; one that names another manifest than the
    camera's, or that arrived before any store key was pinned, deletes nothing and stays. Never
    raises for what is on the partition.
    """
    report = UndockReport()
    pinned = state.pinned_key()
    try:
        receipt_ids = outbox.receipt_ids()
    except (ClipError, OSError) as exc:
        log.warning("receipts not read (%s); no clip is deleted", exc)
        return report
    for clip_id in receipt_ids:
        if pinned is None:
            report.kept.append((clip_id, "no store key pinned yet"))
            continue
        name = f"{RECEIPTS_DIR}/{clip_id}"
        try:
            receipt = outbox.receipt(clip_id, pinned)
            if receipt is None:
                continue
            if receipt.device_id != device_id:
                raise ClipError(f"it is for device {receipt.device_id}")
        except (ClipError, OSError) as exc:
            where = _set_aside(outbox, name)
            log.warning("receipt for %s refused and set aside as %s (%s); the clip is kept", clip_id, where, exc)
            report.kept.append((clip_id, f"receipt not valid: {exc}"))
            continue
        try:
            present = outbox.clip_dir(clip_id).exists()
            on_camera = _manifest_sha256(outbox, clip_id)
            if present and on_camera != receipt.manifest_sha256:
                # Never delete what the store has not got: an unsealed clip, or a manifest other
                # than the one the store received (e.g. a quarantined copy that claimed this id).
                report.kept.append((clip_id, "receipt names another manifest than the one on the camera"))
                continue
            if present:
                outbox.delete_clip(clip_id)
                report.deleted.append(clip_id)
                log.info("deleted clip %s: the store has it (%s)", clip_id, receipt.status)
            # The receipt has done its work; the dock would only read it again.
            (outbox.root / name).unlink(missing_ok=True)
        except (ClipError, OSError) as exc:
            log.warning("clip %s: not cleared after its receipt (%s); the next undocking tries again", clip_id, exc)
            report.kept.append((clip_id, f"not cleared: {exc}"))
    return report


def apply_undock(outbox: Outbox, state: StateDir, device_id: str, public_key: str,
                 clock: DockClock | None, docked_at: float | None) -> tuple[Enrollment | None, UndockReport]:
    """After the host let go of the partition: enrollment, clock, receipts (in that order, so
    that a first enrollment pins the key the others are then checked with). Each step stands
    alone: a bad record is set aside and never keeps the others from being applied."""
    enrollment = load_enrollment(outbox, state, device_id, public_key)
    clock_set = apply_clock(outbox, state, device_id, clock, docked_at) if clock is not None else None
    report = delete_receipted(outbox, state, device_id)
    report.enrolled = enrollment is not None
    report.clock_set = clock_set
    return enrollment, report


__all__ = ["UsbGadget", "ConfigfsGadget", "RequestedGadget", "GadgetRequestError",
           "serve_gadget_requests", "parse_gadget_request", "PowerDockSignal", "load_enrollment",
           "apply_clock", "remember_time", "delete_receipted", "apply_undock", "UndockReport", "DeviceError"]
