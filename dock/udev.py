"""Docked cameras as udev events: the event seam, its pyudev implementation, and the handler.

A docked camera exposes its evidence partition as a USB mass-storage gadget whose serial is the
camera's device id; the partition's filesystem carries a fixed label. The seam is an iterator of
plain ``UdevEvent`` records, so tests feed a list (or umockdev feeds pyudev) and the handler never
sees pyudev objects.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dock.errors import DockError
from dock.mount import Mounter
from evidence_store.clip.errors import FormatError
from evidence_store.clip.ids import check_device_id
from evidence_store.errors import EvidenceError

log = logging.getLogger(__name__)

ADD = "add"
REMOVE = "remove"


@dataclass(frozen=True)
class UdevEvent:
    action: str  # "add", "remove", "change"
    devnode: str  # /dev/sdb1
    fs_label: str | None  # ID_FS_LABEL
    serial: str | None  # ID_SERIAL_SHORT: the camera's device id


def event_from_properties(action: str, props) -> UdevEvent | None:
    """Build a record from a udev property mapping; None for devices without a node."""
    devnode = props.get("DEVNAME")
    if not devnode:
        return None
    serial = props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL")
    return UdevEvent(action, devnode, props.get("ID_FS_LABEL"), serial)


class PyudevEventSource:
    """Block-device events from udev through pyudev. Iterating first yields an ``add`` for each
    block device already present (a camera docked before the daemon started), then live events
    until ``stop`` is set (checked every ``poll_seconds``)."""

    def __init__(self, *, stop: threading.Event | None = None, poll_seconds: float = 1.0, context=None):
        import pyudev  # imported here: one-shot commands never need libudev

        self._pyudev = pyudev
        self.context = context or pyudev.Context()
        self.stop = stop or threading.Event()
        self.poll_seconds = poll_seconds
        # Start listening before enumerating, so a camera docked in between is not missed
        # (at worst it is seen twice; the handler ignores a device it is already ingesting).
        self.monitor = pyudev.Monitor.from_netlink(self.context)
        self.monitor.filter_by("block")
        self.monitor.start()

    def existing(self) -> Iterator[UdevEvent]:
        for device in self.context.list_devices(subsystem="block"):
            event = event_from_properties(ADD, device.properties)
            if event is not None:
                yield event

    def __iter__(self) -> Iterator[UdevEvent]:
        yield from self.existing()
        yield from self.live()

    def live(self) -> Iterator[UdevEvent]:
        """Events as udev announces them (hot-plug), until ``stop`` is set."""
        while not self.stop.is_set():
            device = self.monitor.poll(timeout=self.poll_seconds)
            if device is None:
                continue
            event = event_from_properties(device.action or "change", device.properties)
            if event is not None:
                yield event


class DockingHandler:
    """Decides what an event means and, for a camera, mounts, ingests and unmounts.

    ``ingest(path, expect_device=serial)`` is ``Ingester.ingest``; ``enrolled()`` returns the
    device ids the store knows (asked per event: enrolling needs no daemon restart).
    """

    def __init__(self, *, ingest: Callable, mounter: Mounter, enrolled: Callable[[], Iterable[str]], label: str,
                 mount_root: Path):
        self.ingest = ingest
        self.mounter = mounter
        self.enrolled = enrolled
        self.label = label
        self.mount_root = Path(mount_root)
        self._active: set[str] = set()  # device nodes being docked
        self._serials: set[str] = set()  # cameras being docked
        self._guard = threading.Lock()

    def wants(self, event: UdevEvent) -> str | None:
        """The device id of a camera this event docks, else None (logged)."""
        if event.action == REMOVE:
            if event.fs_label == self.label:
                log.info("%s (serial %s) removed", event.devnode, event.serial)
            return None
        if event.action != ADD or event.fs_label != self.label:
            return None  # other disks and partitions: not ours, not worth a line each
        try:
            serial = check_device_id(event.serial or "")
        except FormatError:
            log.warning("%s: labelled %s but its serial %r is not a device id; ignored", event.devnode, self.label, event.serial)
            return None
        if serial not in set(self.enrolled()):
            log.warning("%s: unknown device %s (not enrolled); ignored", event.devnode, serial)
            return None
        return serial

    def handle(self, event: UdevEvent):
        """Handle one event; returns the IngestReport of a docking, else None. Never raises for a
        camera's failure: the daemon must go on serving the other docks."""
        serial = self.wants(event)
        if serial is None:
            return None
        with self._guard:
            if event.devnode in self._active:
                log.info("%s: already being ingested", event.devnode)
                return None
            if serial in self._serials:
                # Two partitions claiming one camera: one is a copy or a forgery. The mount point
                # is per camera, so the second must never unmount the first under its ingest.
                log.warning("%s claims camera %s, which is already docked at another device; ignored until "
                            "that docking ends", event.devnode, serial)
                return None
            self._active.add(event.devnode)
            self._serials.add(serial)
        mountpoint = self.mount_root / serial
        try:
            log.info("camera %s docked at %s", serial, event.devnode)
            path = self.mounter.mount(event.devnode, mountpoint)
            try:
                report = self.ingest(path, expect_device=serial)
            finally:
                try:
                    self.mounter.unmount(path)
                except DockError as exc:
                    log.error("camera %s: %s", serial, exc)
            log.log(logging.INFO if report.ok else logging.WARNING, "docking of %s done: %s", serial, "all clips stored"
                    if report.ok else report.summary())
            return report
        except (DockError, EvidenceError, OSError) as exc:
            log.error("camera %s at %s: %s", serial, event.devnode, exc)
            return None
        except Exception:
            log.exception("camera %s at %s: unexpected failure", serial, event.devnode)
            return None
        finally:
            with self._guard:
                self._active.discard(event.devnode)
                self._serials.discard(serial)
