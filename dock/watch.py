"""Watched folders: outboxes that appear as folders (a network share, a test rig) rather than
block devices. A watchdog (inotify) observer notices a clip being sealed (its manifest appears,
usually by rename) and a worker ingests that outbox.

Why worker threads: the observer's thread must return quickly or inotify's queue overflows; and a
burst of events for one outbox (ten clips sealed at once) becomes one ingest. One worker per
folder: an ingest may wait for another dock that holds its camera, and the other cameras must not
wait with it (as docked USB cameras each have their own worker). A periodic rescan catches
anything an overflowing inotify queue dropped.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from dock.errors import DockError
from evidence_store.clip.manifest import MANIFEST_FILE
from evidence_store.clip.outbox import CLIPS_DIR
from evidence_store.errors import EvidenceError

log = logging.getLogger(__name__)


def sealed_outbox(path: str, folders: Iterable[Path]) -> Path | None:
    """The watched outbox whose clip ``path`` is a manifest of (``<outbox>/clips/<id>/manifest``)."""
    p = Path(os.fsdecode(path))
    if p.name != MANIFEST_FILE or p.parent.parent.name != CLIPS_DIR:
        return None
    outbox = p.parent.parent.parent
    for folder in folders:
        if outbox == folder:
            return folder
    return None


class FolderWatcher:
    """Watch ``folders`` (each an outbox) and call ``ingest(folder)`` once clips are sealed.

    ``observer`` is a watchdog observer (injectable); ``rescan_seconds`` the safety-net interval.
    """

    def __init__(self, folders: Iterable[str | os.PathLike], ingest: Callable[[Path], object], *, observer=None,
                 rescan_seconds: float = 60.0, settle_seconds: float = 0.2):
        self.folders = [Path(f).absolute() for f in folders]
        self.ingest = ingest
        self.rescan_seconds = rescan_seconds
        self.settle_seconds = settle_seconds
        # Per folder: set when it has something to ingest (many requests, one ingest).
        self._wanted = {folder: threading.Event() for folder in self.folders}
        self._busy: set[Path] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._timer: threading.Thread | None = None
        if observer is None:
            from watchdog.observers import Observer

            observer = Observer()
        self.observer = observer
        self.ingested = 0  # number of ingest runs, for tests and status

    # watchdog calls this on its own thread.
    def dispatch(self, event) -> None:
        for path in (getattr(event, "dest_path", None), event.src_path):
            if path and not getattr(event, "is_directory", False):
                folder = sealed_outbox(path, self.folders)
                if folder is not None:
                    self.request(folder)

    def request(self, folder: Path) -> None:
        wanted = self._wanted.get(Path(folder).absolute())
        if wanted is None:
            log.warning("%s is not a watched folder; ignored", folder)
            return
        wanted.set()

    def start(self) -> None:
        for folder in self.folders:
            if not folder.is_dir():
                raise DockError(f"{folder}: no such folder to watch")
            (folder / CLIPS_DIR).mkdir(exist_ok=True)
            self.observer.schedule(self, str(folder), recursive=True)
        self.observer.start()
        for n, folder in enumerate(self.folders):
            worker = threading.Thread(target=self._work, args=(folder,), name=f"dock-watch-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        self._timer = threading.Thread(target=self._rescan, name="dock-rescan", daemon=True)
        self._timer.start()
        for folder in self.folders:  # clips sealed while no dock was watching
            self.request(folder)

    def stop(self) -> None:
        self._stop.set()
        for wanted in self._wanted.values():
            wanted.set()  # wakes each worker, which sees the stop
        self.observer.stop()
        self.observer.join(timeout=5)
        for worker in self._workers:
            worker.join(timeout=60)

    def alive(self) -> bool:
        return bool(self._workers) and all(w.is_alive() for w in self._workers) and self.observer.is_alive()

    def idle(self) -> bool:
        with self._guard:
            return not self._busy and not any(wanted.is_set() for wanted in self._wanted.values())

    def _rescan(self) -> None:
        while not self._stop.wait(self.rescan_seconds):
            for folder in self.folders:
                self.request(folder)

    def _work(self, folder: Path) -> None:
        wanted = self._wanted[folder]
        while True:
            wanted.wait()
            if self._stop.is_set():
                return
            # Let a burst of seals settle so they become one ingest.
            if self._stop.wait(self.settle_seconds):
                return
            with self._guard:
                wanted.clear()
                self._busy.add(folder)
            try:
                self.ingest(folder)
            except (DockError, EvidenceError, OSError) as exc:
                log.error("%s: %s", folder, exc)
            except Exception:
                log.exception("%s: unexpected failure", folder)
            finally:
                with self._guard:
                    self._busy.discard(folder)
                    self.ingested += 1
