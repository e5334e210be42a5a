"""``bodycam-dock run``: udev docking and watched folders in one long-running service.

Threads: the udev reader (one, blocking on the netlink socket), one worker per docked camera
(so several cameras ingest at once; each under its per-camera lock), the folder watcher's
observer and worker, and the main thread, which only pings systemd's watchdog and waits for
SIGTERM. The main thread pings only while every reader is alive, so a dead reader gets the
service restarted by systemd instead of a dock that silently ignores cameras.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from dock.config import DockConfig
from dock.ingest import Ingester
from dock.lock import DeviceLocks
from dock.mount import Mounter, RealMounter
from dock.udev import ADD, DockingHandler, PyudevEventSource, UdevEvent
from dock.watch import FolderWatcher
from evidence_store.clip.sdnotify import SdNotifier

log = logging.getLogger(__name__)


class Daemon:
    def __init__(self, config: DockConfig, open_store: Callable, *, mounter: Mounter | None = None,
                 events: Iterable[UdevEvent] | None = None, notifier: SdNotifier | None = None, observer=None,
                 clock=None):
        self.config = config
        self.open_store = open_store
        self.stop_event = threading.Event()
        self.notifier = notifier or SdNotifier()
        self.ingester = Ingester(open_store, locks=DeviceLocks(config.state_dir / "locks"), clock=clock,
                                 state_dir=config.state_dir)
        self.watcher = FolderWatcher(config.watch, self.ingester.ingest, observer=observer) if config.watch else None
        self.handler = None
        self._events = events
        self._udev_thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        if config.udev.enabled:
            self.handler = DockingHandler(ingest=self.ingester.ingest, mounter=mounter or RealMounter(),
                                          enrolled=self._enrolled, label=config.udev.label,
                                          mount_root=config.udev.mount_root)

    def _enrolled(self) -> list[str]:
        store = self.open_store()
        try:
            return [d.device_id for d in store.devices()]
        finally:
            store.close()

    def start(self) -> None:
        if self.watcher:
            self.watcher.start()
            log.info("watching %s", ", ".join(map(str, self.config.watch)))
        if self.handler:
            events = self._events if self._events is not None else PyudevEventSource(stop=self.stop_event)
            self._udev_thread = threading.Thread(target=self._read_udev, args=(events,), name="dock-udev", daemon=True)
            self._udev_thread.start()
            log.info("waiting for cameras labelled %s", self.config.udev.label)

    def _read_udev(self, events: Iterable[UdevEvent]) -> None:
        handler = self.handler
        assert handler is not None  # started only with a handler
        for event in events:
            if self.stop_event.is_set():
                return
            if event.action != ADD or event.fs_label != self.config.udev.label:
                handler.wants(event)  # logs removals; ignores other disks
                continue
            worker = threading.Thread(target=handler.handle, args=(event,), name=f"dock-{Path(event.devnode).name}",
                                      daemon=True)
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
            worker.start()

    def healthy(self) -> bool:
        if self.watcher and not self.watcher.alive():
            return False
        udev_alive = self._udev_thread is not None and self._udev_thread.is_alive()
        return not (self.handler and self._events is None and not udev_alive)

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT (or ``stop_event``). Returns the exit code."""
        self.start()
        self.notifier.ready("waiting for cameras")
        interval = self.notifier.watchdog_interval() or 10.0
        code = 0
        while not self.stop_event.wait(interval):
            if not self.healthy():
                log.error("a reader thread died; exiting so that systemd restarts the dock")
                code = 1
                break
            self.notifier.watchdog()
        self.shutdown()
        return code

    def shutdown(self) -> None:
        self.notifier.stopping()
        self.stop_event.set()
        if self.watcher:
            self.watcher.stop()
        for worker in self._workers:
            worker.join(timeout=300)  # let a running ingest finish its clip; a kill is safe too

    def install_signal_handlers(self) -> None:
        def on_signal(signum, frame):
            log.info("signal %d: stopping after the current step", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
