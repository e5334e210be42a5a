"""``bodycam-device``: the camera's command line.

    bodycam-device init --outbox DIR --device-id ID [--state DIR]   first boot: device key
    bodycam-device --config FILE run                                the firmware main loop
    bodycam-device simulate --outbox DIR [--state DIR] [--seconds N] [--emergency] [--clock ISO]
                            [--camera synthetic|FILE]
    bodycam-device recover --outbox DIR [--state DIR]               seal interrupted clips
    bodycam-device status --outbox DIR [--json]
    bodycam-device --config FILE gadget                             internal: bodycam-gadget.service

``--state`` defaults to a sibling ``OUTBOX.state`` of the outbox. Exit codes: 0 success, 1 a
device error, 2 a configuration or usage error, 3 a malformed file, 4 decryption (never here).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from device.clock import DockClock, SetClock
from device.errors import ConfigError, DeviceError
from device.state import StateDir, check_state_outside_outbox, default_state_dir
from evidence_store.clip import cmdline
from evidence_store.clip.clock import CLOCK_CLI, SystemClock
from evidence_store.clip.devkey import DeviceKey
from evidence_store.clip.errors import ClipError
from evidence_store.clip.outbox import CLIPS_DIR, RECEIPTS_DIR, DeviceRecord, Enrollment, Outbox

log = logging.getLogger(__name__)

PROG = "bodycam-device"
SIMULATE_WIDTH, SIMULATE_HEIGHT, SIMULATE_FPS, SIMULATE_BITRATE = 320, 240, 25.0, 300_000
SIMULATE_RESERVE_MIB = 16
MAX_SIMULATE_SECONDS = 12 * 3600  # a shift: longer is a typing error, not a test
TICK = 0.02


def _paths(args) -> tuple[Path, Path]:
    """The outbox and the state folder. Raises DeviceError if the state folder is inside the
    outbox (the private key would be on the partition the dock reads)."""
    outbox = Path(args.outbox)
    state = Path(args.state) if args.state else default_state_dir(outbox)
    check_state_outside_outbox(outbox, state)
    return outbox, state


def _load_key(state: Path) -> DeviceKey:
    try:
        return DeviceKey.load(state)
    except ClipError as exc:
        raise DeviceError(str(exc), f"run: {PROG} init --outbox DIR --device-id ID --state {state}") from None


# --- init ----------------------------------------------------------------------------------------

def _init_failed(exc: OSError, outbox: Path) -> DeviceError:
    return DeviceError(f"cannot initialise the camera: {exc.strerror or exc}: {exc.filename or outbox}",
                       "check that the outbox partition is mounted and writable, then run init again")


def cmd_init(args) -> int:
    outbox, state = _paths(args)
    box = Outbox(outbox)
    try:
        existing = box.device()
    except ClipError:
        existing = None
    except OSError as exc:
        raise _init_failed(exc, outbox) from None
    if existing is not None:
        raise DeviceError(f"{outbox} is already the outbox of device {existing.device_id}",
                          "a camera is initialised once; its key must never be replaced")
    from device.sealing import firmware_version

    # Order: outbox folders first (the likeliest to fail: a partition not mounted or read-only),
    # then the key, then device.json, which publishes the key and so comes last. A key left by an
    # earlier run that failed before device.json was written was never published: it is reused,
    # never replaced, so rerunning init after fixing the outbox works.
    try:
        for folder in (outbox, outbox / CLIPS_DIR, outbox / RECEIPTS_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        if not os.access(outbox, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable", str(outbox))
        StateDir(state).ensure()
        try:
            key = DeviceKey.load(state)
            log.warning("reusing the unpublished device key in %s from an earlier init", state)
        except ClipError:
            key = DeviceKey.generate()
            key.save(state)
        box.init(DeviceRecord(args.device_id, str(key.public), firmware_version()))
    except ClipError as exc:
        raise DeviceError(str(exc)) from None
    except OSError as exc:
        raise _init_failed(exc, outbox) from None
    print(f"device {args.device_id}: key in {state}, outbox {outbox}")
    print(f"public key: {key.public}")
    print(f"next: bodycam-dock --store DIR enroll {outbox} --device-id {args.device_id}")
    return 0


# --- recover / status ----------------------------------------------------------------------------

def cmd_recover(args) -> int:
    from device.recover import recover

    outbox, state = _paths(args)
    report = recover(outbox, state, _load_key(state))
    for clip_id in report.sealed:
        print(f"sealed {clip_id} (interrupted)")
    for clip_id in report.removed_empty:
        print(f"removed empty folder {clip_id}")
    for clip_id, why in report.unsealable:
        print(f"cannot seal {clip_id}: {why}", file=sys.stderr)
    if report.marker_set_aside is not None:
        print(f"the recording marker could not be used and was kept as {report.marker_set_aside}",
              file=sys.stderr)
    if report.resume is not None:
        print(f"the process died while recording {report.resume.clip_id}; "
              f"'{PROG} run' resumes such a recording at once")
    if not (report.sealed or report.removed_empty or report.unsealable):
        print("nothing to recover")
    return 1 if report.unsealable else 0


def _status(outbox: Path) -> dict:
    box = Outbox(outbox)
    try:
        device = box.device()
    except ClipError as exc:
        raise DeviceError(str(exc), f"run: {PROG} init --outbox {outbox} --device-id ID") from None
    state = default_state_dir(outbox)
    try:
        pinned = StateDir(state).pinned_key() if state.exists() else None
        try:
            enrollment = box.enrollment(pinned)
        except ClipError:
            enrollment = None
            if pinned is None:
                raise
        if enrollment is None and pinned is not None:
            # The outbox's is missing or refused: the camera records with the last good one.
            kept = StateDir(state).enrollment_copy()
            enrollment = Enrollment.open(kept, pinned) if kept is not None else None
        enrolled = None if enrollment is None else {
            "officer": enrollment.officer, "profile": enrollment.profile.name,
            "prerecord_max_seconds": enrollment.profile.prerecord_max_seconds,
            "sound": enrollment.profile.sound,
            "recipients": len(enrollment.recipients), "issued_at": enrollment.issued_at}
        enrollment_error = None
    except ClipError as exc:
        enrolled, enrollment_error = None, str(exc)
    listing = box.list_clips()
    from device.recorder import disk_free

    out = {"device_id": device.device_id, "public_key": device.public_key, "firmware": device.firmware,
           "enrollment": enrolled, "enrollment_error": enrollment_error,
           "sealed": listing.sealed, "unsealed": listing.unsealed,
           "rejected": [name for name, _ in listing.rejected], "receipts": box.receipt_ids(),
           "free_bytes": disk_free(outbox)}
    if state.exists():
        sd = StateDir(state)
        head = sd.chain()
        marker = sd.marker()
        out["chain"] = {"next_sequence": head.next_sequence, "last_manifest": head.last_manifest}
        out["recording"] = None if marker is None else marker.clip_id
    return out


def cmd_status(args) -> int:
    info = _status(Path(args.outbox))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"device      {info['device_id']}  ({info['firmware'] or 'firmware unknown'})")
    e = info["enrollment"]
    if e:
        print(f"enrollment  officer {e['officer']}, profile {e['profile']}, {e['recipients']} recipient(s)")
    else:
        print(f"enrollment  none{': ' + info['enrollment_error'] if info['enrollment_error'] else ''}")
    print(f"clips       {len(info['sealed'])} sealed, {len(info['unsealed'])} unsealed, "
          f"{len(info['receipts'])} receipt(s)")
    for clip_id in info["unsealed"]:
        print(f"  unsealed  {clip_id}  (run: {PROG} recover --outbox {args.outbox})")
    print(f"free        {info['free_bytes'] // (1024 * 1024)} MiB")
    if "chain" in info:
        print(f"sequence    next {info['chain']['next_sequence']}")
    return 0


# --- simulate ------------------------------------------------------------------------------------

#: ``simulate --clock`` plays a camera whose clock is wrong, even absurdly (year 1): the camera's
#: own plausibility rules must cope with that. Refused is only what leaves no room for datetime
#: arithmetic (a year before 1 or after 9998 does not fit Python's datetime).
SIMULATE_CLOCK_YEARS = (1, 9998)


def _parse_clock(text: str) -> datetime:
    return cmdline.parse_time_arg(text, "--clock", SIMULATE_CLOCK_YEARS)


def _make_camera(spec: str, clock):
    from device.camera import open_camera
    from device.config import CameraConfig

    if spec == "synthetic":
        return open_camera(CameraConfig(backend="synthetic", width=SIMULATE_WIDTH, height=SIMULATE_HEIGHT,
                                        fps=SIMULATE_FPS, bitrate=SIMULATE_BITRATE), clock)
    if not Path(spec).is_file():
        raise ConfigError(f"--camera: {spec} is neither 'synthetic' nor a file")
    return open_camera(CameraConfig(backend="replay", device=spec), clock)  # picture and sound of the file


def cmd_simulate(args) -> int:
    """Drive the real controller with mock pins, as an officer would press the buttons."""
    from gpiozero.pins.mock import MockFactory

    from device import hardware as hw
    from device.config import ControlsConfig, PinsConfig
    from device.controller import Controller, State
    from device.recorder import EncryptingRecorder
    from device.recover import recover

    if not math.isfinite(args.seconds) or args.seconds <= 0:
        raise ConfigError(f"--seconds must be a finite number above zero, got {args.seconds}")
    outbox, state = _paths(args)
    key = _load_key(state)
    base = SystemClock()
    clock = SetClock(base, _parse_clock(args.clock), clock_source=CLOCK_CLI) if args.clock else DockClock(base)
    report = recover(outbox, state, key)
    for clip_id in report.sealed:
        log.warning("sealed interrupted clip %s first", clip_id)
    camera = _make_camera(args.camera, clock)
    recorder = EncryptingRecorder(outbox, state, key, camera, clock, reserve_mib=SIMULATE_RESERVE_MIB)
    controls = ControlsConfig()
    factory = MockFactory()
    hardware = hw.Hardware(PinsConfig(), clock, pin_factory=factory, debounce_seconds=controls.debounce_seconds)
    try:
        controller = Controller(recorder, hardware, clock, controls)

        def run_for(seconds: float, until=None) -> bool:
            end = time.monotonic() + seconds
            while True:
                controller.tick()
                if until is not None and until():
                    return True
                if time.monotonic() >= end:
                    return until is None
                time.sleep(TICK)

        def pin(name: str):
            return hardware.buttons[name].pin

        controller.tick()
        button = hw.EMERGENCY if args.emergency else hw.RECORD
        pin(button).drive_low()
        run_for(0.1)
        pin(button).drive_high()
        run_for(controls.announcement_seconds + 2.0,
                lambda: controller.state is State.RECORDING or controller.last_refusal is not None)
        if controller.state is not State.RECORDING:
            reason = controller.last_refusal or "the recording did not start"
            hints = ["enroll the camera: bodycam-dock --store DIR enroll OUTBOX --device-id ID"] \
                if reason == "not enrolled" else []
            raise DeviceError(f"recording refused: {reason}", *hints)
        print(f"recording {recorder.clip_id}", flush=True)
        # Stop with a hold timed so that the hold completes N seconds after recording began.
        # Stopping takes a hold of hold_seconds, as it does for an officer, so a clip is never
        # shorter than that: --seconds below it records hold_seconds (documented in --help).
        if args.seconds < controls.hold_seconds:
            log.warning("--seconds %s is shorter than the stop hold: the clip lasts %s s", args.seconds,
                        controls.hold_seconds)
        run_for(max(0.0, args.seconds - controls.hold_seconds))
        pin(hw.RECORD).drive_low()
        stopped = run_for(controls.hold_seconds + 2.0, lambda: controller.state is not State.RECORDING)
        pin(hw.RECORD).drive_high()
        run_for(0.1)
        if not stopped:
            controller.shutdown()
        manifest = recorder.last_sealed
    finally:
        recorder.close()
        hardware.close()
    if manifest is None:
        raise DeviceError("the recording was not sealed", f"run: {PROG} recover --outbox {outbox}")
    print(f"sealed {manifest.clip_id}: {manifest.trigger}, {manifest.recorded_seconds:.1f} s, "
          f"{len(manifest.segments)} segment(s), sequence {manifest.sequence}")
    return 0


# --- run -----------------------------------------------------------------------------------------

def _find_gadget(outbox: Path, partition: str | None = None, udc: str | None = None):
    """A configfs USB gadget for the partition holding the outbox, if the kernel offers one
    (``partition``, ``udc``: from [dock], overriding what is found)."""
    from device.docking import CONFIGFS_ROOT, ConfigfsGadget
    from device.mounts import partition_holding

    if not CONFIGFS_ROOT.is_dir():
        return None
    best = partition_holding(outbox)
    if best is None or best[1] == "/":
        log.warning("the outbox is not on a partition of its own: docking will not expose it over USB")
        return None
    return ConfigfsGadget(partition or best[0], best[1], udc=udc)


def _make_gadget(config, notifier):
    """The UsbGadget that [dock] gadget names; None for "none"."""
    from device.config import GADGET_CONFIGFS, GADGET_HELPER
    from device.docking import RequestedGadget

    if config.dock.gadget == GADGET_HELPER:
        # The wait for the helper (fsck can take a while) runs on the controller's thread, which
        # pings the watchdog: keep pinging while waiting; the wait itself is bounded.
        return RequestedGadget(config.dock.helper_dir, keepalive=notifier.watchdog)
    if config.dock.gadget == GADGET_CONFIGFS:
        return _find_gadget(config.storage.outbox, config.dock.partition, config.dock.udc)
    return None


def cmd_run(args) -> int:
    from device.camera import open_camera
    from device.config import DEFAULT_CONFIG_PATH, load_config
    from device.controller import Controller
    from device.docking import PowerDockSignal
    from device.hardware import AplayPlayer, Hardware
    from device.recorder import EncryptingRecorder
    from device.recover import recover
    from evidence_store.clip.sdnotify import SdNotifier

    config = load_config(args.config or DEFAULT_CONFIG_PATH)
    storage = config.storage
    notifier = SdNotifier()
    key = _load_key(storage.state)
    clock = DockClock(SystemClock())
    report = recover(storage.outbox, storage.state, key)
    camera = open_camera(config.camera, clock)
    recorder = EncryptingRecorder(storage.outbox, storage.state, key, camera, clock, reserve_mib=storage.reserve_mib,
                                  segment_seconds=storage.segment_seconds,
                                  local_prerecord=config.profile.prerecord_seconds,
                                  local_sound=config.profile.sound, gadget=_make_gadget(config, notifier))
    hardware = Hardware(config.pins, clock, debounce_seconds=config.controls.debounce_seconds)
    dock_signal = PowerDockSignal(config.dock.usb_power) if config.dock.usb_power else None
    stop = threading.Event()
    try:
        controller = Controller(recorder, hardware, clock, config.controls, sound_player=AplayPlayer(),
                                dock_signal=dock_signal)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        if report.resume is not None:
            recorder.set_resume(report.resume.clip_id)
            controller.resume_interrupted(report.resume.trigger)
        controller.run_forever(stop, notifier=notifier)
    finally:
        recorder.close()
        hardware.close()
    return 0


# --- gadget (the privileged helper) -----------------------------------------------------------

def _configfs_gadget(config, action: str, **seams):
    """The ConfigfsGadget for the helper, from root's configuration only: which block device is
    exposed and where it is mounted again is never taken from the (unprivileged) request.
    ``seams`` (tests): ConfigfsGadget's ``root`` and ``run``."""
    from device.docking import CONFIGFS_ROOT, GADGET_ATTACH, ConfigfsGadget, exposed_partition
    from device.mounts import mounted_partition

    mountpoint = config.storage.outbox
    # Attach: the device mounted at the outbox now; detach: the one an earlier attach exposed.
    partition = config.dock.partition or (mounted_partition(mountpoint) if action == GADGET_ATTACH
                                          else exposed_partition(seams.get("root", CONFIGFS_ROOT)))
    if partition is None:
        raise DeviceError(f"cannot tell which partition to {action}: nothing "
                          f"{'is mounted at ' + str(mountpoint) if action == GADGET_ATTACH else 'is exposed'} "
                          "and dock.partition is not set")
    return ConfigfsGadget(partition, mountpoint, udc=config.dock.udc, **seams)


def cmd_gadget(args) -> int:
    from device.config import DEFAULT_CONFIG_PATH, load_config
    from device.docking import serve_gadget_requests

    config = load_config(args.config or DEFAULT_CONFIG_PATH)
    serve_gadget_requests(config.dock.helper_dir, lambda action: _configfs_gadget(config, action))
    return 0


# --- main ----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = cmdline.Parser(prog=PROG, description="Body-worn camera firmware.")
    parser.add_argument("--config", type=Path,
                        help="configuration file (run, gadget; default /etc/bodycam/device.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=cmdline.Parser)

    p = sub.add_parser("init", help="first boot: create the device key and the outbox")
    p.add_argument("--outbox", required=True)
    p.add_argument("--device-id", required=True)
    p.add_argument("--state")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="the firmware main loop (under systemd)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("simulate", help="record a real clip through the real controller with mock buttons")
    p.add_argument("--outbox", required=True)
    p.add_argument("--state")
    p.add_argument("--seconds", type=cmdline.arg_type(cmdline.parse_number_arg, 0.0, MAX_SIMULATE_SECONDS), default=3.0,
                   help="seconds to record (default 3); at least the 1.5 s hold that stops a recording")
    p.add_argument("--emergency", action="store_true", help="emergency button instead of an announcement")
    p.add_argument("--clock", help="the camera's clock (ISO 8601), recorded as clock source 'cli'")
    p.add_argument("--camera", default="synthetic",
                   help="'synthetic' or an MPEG-TS/H.264 file to replay (its sound too)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("recover", help="seal clips a crash or power loss left unsealed")
    p.add_argument("--outbox", required=True)
    p.add_argument("--state")
    p.set_defaults(func=cmd_recover)

    p = sub.add_parser("status", help="what the outbox holds")
    p.add_argument("--outbox", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("gadget", help="internal: run by bodycam-gadget.service as root, not by hand",
                       description="Internal command of bodycam-gadget.service (root, started by "
                       "bodycam-gadget.path): performs the firmware's USB gadget request (attach or "
                       "detach) found in [dock] helper_dir and writes the answer there. The partition "
                       "and mountpoint come from the configuration, never from the request.")
    p.set_defaults(func=cmd_gadget)
    return parser


def _setup_logging(verbose: bool) -> None:
    # Plain lines on stderr: journald adds the time and the unit.
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    return cmdline.run(PROG, argv, _main, errors=(DeviceError, ClipError))


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    if getattr(args, "device_id", None) is not None:
        cmdline.check_identifier("device", args.device_id, "--device-id")
    if getattr(args, "clock", None) is not None:
        _parse_clock(args.clock)  # before anything is loaded or recorded
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
