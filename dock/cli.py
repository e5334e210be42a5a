"""bodycam-dock: the docking station's command line.

    bodycam-dock --store DIR enroll OUTBOX --device-id ID    register key, write enrollment + clock
    bodycam-dock --store DIR assign DEVICE --officer ID      written onto the camera at next docking
    bodycam-dock --store DIR revoke DEVICE --reason TEXT     a lost or retired camera
    bodycam-dock --store DIR ingest OUTBOX [--json]          one-shot; exit 0 only if all ingested
    bodycam-dock --store DIR watch DIR ...                   ingest as sealed clips appear
    bodycam-dock --store DIR status [--json]                 cameras, last docking, pending work
    bodycam-dock --config FILE run                           udev + watched folders, under systemd

``BODYCAM_STORE`` may stand for ``--store``; ``BODYCAM_DOCK_STATE`` names the folder for
per-camera locks and docking reports (default /var/lib/bodycam-dock). ``-v`` shows tracebacks.

Exit codes:
    0   success (ingest: every sealed clip stored and cleared, nothing left behind)
    1   error
    2   usage or configuration error
    3   integrity error reported by the store
    4   ingest incomplete: clips quarantined, skipped (I/O), unsealed or refused
    5   the camera is not enrolled (nothing was touched)
    6   mount/umount failed
    130 interrupted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from dock._progress import ProgressBar
from dock.config import DEFAULT_CONFIG, default_state_dir, load_config
from dock.errors import ConfigError, DockError
from evidence_store.clip import cmdline
from evidence_store.clip.clock import SystemClock
from evidence_store.errors import EvidenceError

log = logging.getLogger(__name__)
PROG = "bodycam-dock"
EXIT_INCOMPLETE = 4


def build_parser() -> argparse.ArgumentParser:
    p = cmdline.Parser(prog=PROG, description="Docking station: verify and ingest body-worn camera clips.")
    p.add_argument("--store", help="evidence store folder (or BODYCAM_STORE)")
    p.add_argument("--config", help=f"dock configuration (run; default {DEFAULT_CONFIG})")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = p.add_subparsers(dest="command", required=True, parser_class=cmdline.Parser)
    s = sub.add_parser("enroll", help="register a camera's key; write enrollment and clock onto it")
    s.add_argument("outbox")
    s.add_argument("--device-id", required=True)
    s = sub.add_parser("assign", help="assign a camera to an officer")
    s.add_argument("device")
    s.add_argument("--officer", required=True)
    s = sub.add_parser("revoke", help="revoke a lost or retired camera")
    s.add_argument("device")
    s.add_argument("--reason", required=True)
    s = sub.add_parser("ingest", help="ingest a camera's outbox once")
    s.add_argument("outbox")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("watch", help="ingest clips as they are sealed in these outbox folders")
    s.add_argument("folders", nargs="+")
    s = sub.add_parser("status", help="cameras, last docking, pending and quarantined work")
    s.add_argument("--json", action="store_true")
    sub.add_parser("run", help="the service: udev docking and watched folders (from --config)")
    return p


def _store_path(args) -> Path:
    path = args.store or os.environ.get("BODYCAM_STORE")
    if not path:
        raise ConfigError("no store given", "hint: pass --store DIR or set BODYCAM_STORE")
    return Path(path)


def _opener(path: Path):
    from evidence_store.store import Store  # heavy (SQLite, log); only commands that need it

    def open_store():
        return Store.open(path)

    open_store().close()  # fail early, once, with the store's own hint
    return open_store


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bodycam-dock``; returns the exit code (see the module docstring)."""
    want_json = []

    def body(argv: list[str]) -> int:
        _setup_logging("-v" in argv or "--verbose" in argv)
        args = build_parser().parse_args(argv)
        want_json.append(getattr(args, "json", False))
        _check_arguments(args)
        return _dispatch(args)

    def on_error(message: str, code: int) -> None:
        # With --json also a JSON object on stdout, so a script reading stdout never gets an
        # empty answer.
        if any(want_json):
            print(json.dumps({"ok": False, "error": message, "exit_code": code}, sort_keys=True))

    # A folder the dock cannot write (its state folder, a read-only store): the OSError names it.
    return cmdline.run(PROG, argv, body, errors=(DockError, EvidenceError), on_error=on_error,
                       os_hint="check the folder's owner and permissions, or set BODYCAM_DOCK_STATE")


def _check_arguments(args) -> None:
    """Identifiers and texts through the one checker of their kind (shared by all three CLIs)."""
    if getattr(args, "device_id", None) is not None:
        cmdline.check_identifier("device", args.device_id, "--device-id")
    if getattr(args, "device", None) is not None:
        cmdline.check_identifier("device", args.device, "DEVICE")
    if getattr(args, "officer", None) is not None:
        cmdline.check_identifier("officer", args.officer, "--officer")
    if getattr(args, "reason", None) is not None:
        cmdline.check_text(args.reason, "--reason")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and callers may swap it)."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(verbose: bool) -> None:
    # Plain lines on stderr: under systemd, journald adds the time and the unit.
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def _dispatch(args) -> int:
    clock = SystemClock()
    if args.command == "run":
        return _run(args)
    open_store = _opener(_store_path(args))
    if args.command == "ingest":
        return _ingest(args, open_store, clock)
    if args.command == "watch":
        return _watch(args, open_store, clock)
    store = open_store()
    try:
        if args.command == "enroll":
            from dock.admin import enroll

            fingerprint = enroll(store, args.outbox, args.device_id, clock)
            print(f"enrolled {args.device_id} (key {fingerprint}); enrollment note and clock written onto the camera")
        elif args.command == "assign":
            store.assign(args.device, args.officer)
            print(f"assigned {args.device} to officer {args.officer}; written onto the camera at its next docking")
        elif args.command == "revoke":
            store.revoke(args.device, args.reason)
            print(f"revoked {args.device}: its clips are quarantined from now on")
        elif args.command == "status":
            from dock.admin import format_status, status

            data = status(store, default_state_dir())
            print(json.dumps(data, indent=2, sort_keys=True) if args.json else format_status(data))
        return 0
    finally:
        store.close()


def _ingester(open_store, clock, progress=None):
    from dock.ingest import Ingester
    from dock.lock import DeviceLocks

    state = default_state_dir()
    return Ingester(open_store, locks=DeviceLocks(state / "locks"), clock=clock, progress=progress, state_dir=state)


def _ingest(args, open_store, clock) -> int:
    bar = ProgressBar()
    report = _ingester(open_store, clock, progress=bar.update if bar.enabled else None).ingest(args.outbox)
    bar.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for clip in report.clips:
            extra = f": {clip.reason}" if clip.reason else ""
            flags = f" [{', '.join(clip.flags)}]" if clip.flags else ""
            late = ", then deleted at once: it arrived past its two-week deadline" if clip.clip_id in report.expired else ""
            print(f"{clip.clip_id}  {clip.outcome}{flags}{extra}{late}")
        for clip_id in report.unsealed:
            print(f"{clip_id}  unsealed: left on the camera")
        for name, why in report.rejected:
            print(f"{name!r}  refused: {why}")
        for error in report.errors:
            print(f"error: {error}")
        print(report.summary())
    return 0 if report.ok else EXIT_INCOMPLETE


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def _watch(args, open_store, clock) -> int:
    from dock.watch import FolderWatcher

    ingester = _ingester(open_store, clock)
    watcher = FolderWatcher(args.folders, ingester.ingest)
    stop = _stop_on_signals()
    watcher.start()
    log.info("watching %s; Ctrl-C to stop", ", ".join(args.folders))
    try:
        while not stop.wait(1.0):
            if not watcher.alive():
                raise DockError("the folder watcher stopped unexpectedly")
    finally:
        watcher.stop()
    return 0


def _run(args) -> int:
    from dock.daemon import Daemon

    config = load_config(args.config or DEFAULT_CONFIG)
    if args.store:
        config = type(config)(store=Path(args.store), watch=config.watch, state_dir=config.state_dir, udev=config.udev)
    daemon = Daemon(config, _opener(config.store))
    daemon.install_signal_handlers()
    return daemon.serve()


if __name__ == "__main__":
    sys.exit(main())
