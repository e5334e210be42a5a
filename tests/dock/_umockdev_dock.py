"""Run under ``umockdev-wrapper`` by test_udev.py: fake a docked camera's block device in a
umockdev testbed, let the real pyudev event source see its uevent, and dock it through the
FolderMounter (a testbed has no real block device to mount). Prints the docking report as JSON.

Usage: python -m tests.dock._umockdev_dock STORE OUTBOX STATE SERIAL
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from dock.ingest import Ingester  # noqa: E402
from dock.lock import DeviceLocks  # noqa: E402
from dock.udev import DockingHandler, PyudevEventSource  # noqa: E402
from evidence_store.store import Store  # noqa: E402
from tests.dock.helpers import FolderMounter  # noqa: E402

DEVNODE = "/dev/sdz1"


def main() -> int:
    store_root, outbox, state, serial = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    testbed = UMockdev.Testbed.new()
    stop = threading.Event()
    source = PyudevEventSource(stop=stop, poll_seconds=0.2)
    # Docked before the daemon started: an unrelated disk, found by enumeration and ignored.
    other = testbed.add_device("block", "sdy1", None, ["size", "100"],
                               ["DEVNAME", "/dev/sdy1", "DEVTYPE", "partition", "ID_FS_LABEL", "DATA", "ID_SERIAL_SHORT", "X1"])
    testbed.uevent(other, "add")
    mounter = FolderMounter({DEVNODE: outbox})
    ingester = Ingester(lambda: Store.open(store_root), locks=DeviceLocks(state / "locks"), state_dir=state)

    def enrolled():
        with Store.open(store_root) as store:
            return [d.device_id for d in store.devices()]

    handler = DockingHandler(ingest=ingester.ingest, mounter=mounter, enrolled=enrolled, label="BODYCAM",
                             mount_root=state / "mnt")
    seen = []
    for event in source.existing():
        seen.append(["existing", event.action, event.devnode, event.fs_label, event.serial])
        if handler.handle(event) is not None:
            print(json.dumps({"report": None, "events": seen, "mounter": mounter.calls, "why": "camera before plug"}))
            return 1
    # Then the camera is plugged in while the daemon listens: it must arrive through the monitor.
    camera = testbed.add_device("block", "sdz1", None, ["size", "65536"],
                                ["DEVNAME", DEVNODE, "DEVTYPE", "partition", "ID_FS_LABEL", "BODYCAM", "ID_SERIAL_SHORT", serial])
    testbed.uevent(camera, "add")
    timer = threading.Timer(20, stop.set)  # never hang the test run
    timer.start()
    try:
        for event in source.live():
            seen.append(["live", event.action, event.devnode, event.fs_label, event.serial])
            report = handler.handle(event)
            if report is not None:
                print(json.dumps({"report": report.to_json(), "events": seen, "mounter": mounter.calls}))
                return 0
            if len(seen) > 10:
                break
    finally:
        timer.cancel()
    print(json.dumps({"report": None, "events": seen, "mounter": mounter.calls}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
