"""The camera's configuration (TOML, ``/etc/bodycam/device.toml``) and its legal profile.

Example::

    [pins]                      # BCM numbers or gpiozero pin names ("GPIO17", "BOARD11")
    record = 17
    emergency = 27
    homes = 22                  # optional third button; without it record+emergency sets the flag
    dock = 23                   # optional dock signal, active low
    led_red = 5
    led_amber = 6
    led_green = 13
    buzzer = 19

    [controls]
    announcement_seconds = 3
    announcement_sound = "/usr/share/bodycam/announcement.wav"   # optional
    reminder_interval_seconds = 30
    hold_seconds = 1.5
    debounce_seconds = 0.02

    [storage]
    outbox = "/srv/bodycam/outbox"
    state = "/var/lib/bodycam"
    reserve_mib = 512           # below this much free space the lights warn of low storage;
                                # a recording still starts whenever it can be sealed
    segment_seconds = 60

    [camera]
    backend = "picamera2"       # "picamera2", "v4l2", "synthetic" or "replay" (plays the file in device)
    width = 1920
    height = 1080
    fps = 25
    bitrate = 10000000
    device = "/dev/video0"      # v4l2: the video device; replay: the MPEG-TS file
    audio_device = "default"    # the microphone: an ALSA device ("hw:1,0") or a PulseAudio source
    audio_format = "alsa"       # "alsa" or "pulse"

    [profile]                   # may only narrow the enrolled profile
    prerecord_seconds = 0
    sound = true                # false: never record sound; true records it only where the
                                # enrolled profile allows it

    [dock]
    usb_power = "/sys/class/power_supply/*/online"   # optional dock signal from USB power besides
                                                     # pins.dock: a glob; "1" or "configured" = docked
    gadget = "helper"           # how docking exposes the evidence partition over USB:
                                #   "helper"   (default) ask bodycam-gadget.service, which runs as
                                #              root on request; the firmware stays unprivileged
                                #   "configfs" do it in this process: only when running as root
                                #   "none"     expose nothing; docking only stops using the outbox
    partition = "/dev/mmcblk0p3"  # optional: the evidence partition's block device; default: the
                                  # device mounted at storage.outbox
    udc = "fe980000.usb"        # optional: the USB device controller; default: the first one
    helper_dir = "/run/bodycam-device/gadget"   # where firmware and helper exchange request and
                                                # answer (must match bodycam-gadget.path)

Unknown sections and keys are errors: a typo in a file that decides whether a camera may record
must not be silently ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from device.errors import ConfigError
from evidence_store.clip.profile import Profile
from evidence_store.clip.tomlfile import read_toml

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/bodycam/device.toml")
CAMERA_BACKENDS = ("picamera2", "v4l2", "synthetic", "replay")
AUDIO_FORMATS = ("alsa", "pulse")
GADGET_HELPER, GADGET_CONFIGFS, GADGET_NONE = "helper", "configfs", "none"
GADGET_MODES = (GADGET_HELPER, GADGET_CONFIGFS, GADGET_NONE)

Pin = int | str


@dataclass(frozen=True)
class PinsConfig:
    record: Pin = 17
    emergency: Pin = 27
    homes: Pin | None = None
    dock: Pin | None = 23
    led_red: Pin = 5
    led_amber: Pin = 6
    led_green: Pin = 13
    buzzer: Pin = 19


@dataclass(frozen=True)
class ControlsConfig:
    announcement_seconds: float = 3.0
    announcement_sound: Path | None = None
    reminder_interval_seconds: float = 30.0
    hold_seconds: float = 1.5
    debounce_seconds: float = 0.02
    # How long a refusal ("storage reserve", "not enrolled") stays on the LEDs.
    refusal_display_seconds: float = 5.0


@dataclass(frozen=True)
class StorageConfig:
    outbox: Path = Path("/srv/bodycam/outbox")
    state: Path = Path("/var/lib/bodycam")
    reserve_mib: int = 512
    segment_seconds: float = 60.0


@dataclass(frozen=True)
class CameraConfig:
    backend: str = "picamera2"
    width: int = 1920
    height: int = 1080
    fps: float = 25.0
    bitrate: int = 10_000_000
    device: str = "/dev/video0"
    audio_device: str = "default"
    audio_format: str = "alsa"


@dataclass(frozen=True)
class ProfileConfig:
    """What the camera's own configuration asks of the legal profile. It can only narrow it."""

    prerecord_seconds: int = 0
    sound: bool = True  # False switches sound off; True cannot switch it on against the profile


@dataclass(frozen=True)
class DockConfig:
    """``usb_power``: a second dock signal read from sysfs (see docking.PowerDockSignal); None:
    GPIO only. ``gadget``: who exposes the partition over USB (see the module docstring);
    ``partition``, ``udc``: for the helper or configfs; ``helper_dir``: the helper's folder."""

    usb_power: str | None = None
    gadget: str = GADGET_HELPER
    partition: str | None = None
    udc: str | None = None
    helper_dir: Path = Path("/run/bodycam-device/gadget")


@dataclass(frozen=True)
class DeviceConfig:
    pins: PinsConfig = field(default_factory=PinsConfig)
    controls: ControlsConfig = field(default_factory=ControlsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    dock: DockConfig = field(default_factory=DockConfig)
    source: Path | None = None


_SECTIONS: dict[str, type] = {
    "pins": PinsConfig,
    "controls": ControlsConfig,
    "storage": StorageConfig,
    "camera": CameraConfig,
    "profile": ProfileConfig,
    "dock": DockConfig,
}


# --- legal profile -----------------------------------------------------------------------------

def effective_profile(enrolled: Profile, local: DeviceConfig | ProfileConfig) -> Profile:
    """The profile the camera applies: the enrolled one, narrowed by the local configuration.

    Narrowing only: the pre-recording length is the smaller of the two, so a local setting can
    never switch on a buffer the enrolled profile forbids (0 stays 0) nor lengthen one. A local
    request beyond the enrolled maximum is logged and clamped, not an error: the camera must stay
    usable, and the lawful value is known.
    """
    narrowing = local.profile if isinstance(local, DeviceConfig) else local
    asked = narrowing.prerecord_seconds
    allowed = enrolled.prerecord_max_seconds
    if asked > allowed:
        log.warning("profile %s allows at most %d s of pre-recording; configuration asks %d s: using %d s",
                    enrolled.name, allowed, asked, allowed)
    # Sound likewise: both must allow it; the configuration can switch it off, never on.
    sound = bool(enrolled.sound) and narrowing.sound is True
    return dataclasses.replace(enrolled, prerecord_max_seconds=max(0, min(asked, allowed)), sound=sound)


# --- loading -----------------------------------------------------------------------------------

def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> DeviceConfig:
    """Read and check a TOML configuration file.

    Missing sections and keys take their defaults. Raises ConfigError (with ``key`` set where one
    is to blame) for an unreadable file, bad TOML, an unknown key or a bad value.
    """
    path = Path(path)
    data = read_toml(path, ConfigError, "create it, or pass another with --config FILE")
    return dataclasses.replace(parse_config(data, where=str(path)), source=path)


def parse_config(data: Mapping[str, Any], *, where: str = "configuration") -> DeviceConfig:
    """Build a DeviceConfig from an already parsed mapping (as ``tomllib`` returns). See load_config."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section [{unknown[0]}]",
                          f"known sections: {', '.join(_SECTIONS)}", key=unknown[0])
    parts = {}
    for name, cls in _SECTIONS.items():
        section = data.get(name, {})
        if not isinstance(section, Mapping):
            raise ConfigError(f"{where}: {name} must be a table ([{name}])", key=name)
        parts[name] = _build(cls, section, name)
    config = DeviceConfig(**parts)
    _check(config)
    return config


def _build(cls: type, data: Mapping[str, Any], section: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {section}.{unknown[0]}",
                          f"known keys in [{section}]: {', '.join(names)}", key=f"{section}.{unknown[0]}")
    values = {name: _coerce(f"{section}.{name}", data[name], hints[name]) for name in names if name in data}
    return cls(**values)


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Check ``value`` against a field annotation; returns the value converted (str -> Path, int -> float)."""
    options = typing.get_args(typ) if typing.get_origin(typ) in (Union, types.UnionType) else (typ,)
    for option in options:
        if option is type(None):
            continue  # TOML has no null; an optional key is simply left out
        if option is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue  # bool is an int subclass: true must not pass for a pin number or a count
        if option is int and isinstance(value, int):
            return value
        if option is float and isinstance(value, (int, float)):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if option is Path and isinstance(value, str) and value:
            return Path(value)
    wanted = " or ".join("path" if o is Path else getattr(o, "__name__", str(o))
                         for o in options if o is not type(None))
    raise ConfigError(f"{key} must be {wanted}, got {value!r}", key=key)


def _positive(key: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"{key} must be {'zero or more' if zero_ok else 'more than zero'}, got {value!r}", key=key)


def _check(config: DeviceConfig) -> None:
    c = config.controls
    for name in ("announcement_seconds", "reminder_interval_seconds", "hold_seconds", "refusal_display_seconds"):
        _positive(f"controls.{name}", getattr(c, name))
    _positive("controls.debounce_seconds", c.debounce_seconds, zero_ok=True)
    if c.debounce_seconds >= c.hold_seconds:
        raise ConfigError(f"controls.debounce_seconds ({c.debounce_seconds}) must be shorter than "
                          f"controls.hold_seconds ({c.hold_seconds})", key="controls.debounce_seconds")
    s = config.storage
    box, state = s.outbox.resolve(), s.state.resolve()
    if state == box or box in state.parents:
        raise ConfigError(f"storage.state ({s.state}) is inside storage.outbox ({s.outbox})",
                          "the device key must never be on the evidence partition the dock reads",
                          key="storage.state")
    _positive("storage.reserve_mib", s.reserve_mib, zero_ok=True)
    _positive("storage.segment_seconds", s.segment_seconds)
    cam = config.camera
    if cam.backend not in CAMERA_BACKENDS:
        raise ConfigError(f"camera.backend must be one of {', '.join(CAMERA_BACKENDS)}, got {cam.backend!r}",
                          key="camera.backend")
    for name in ("width", "height", "fps", "bitrate"):
        _positive(f"camera.{name}", getattr(cam, name))
    if cam.audio_format not in AUDIO_FORMATS:
        raise ConfigError(f"camera.audio_format must be one of {', '.join(AUDIO_FORMATS)}, got {cam.audio_format!r}",
                          key="camera.audio_format")
    _positive("profile.prerecord_seconds", config.profile.prerecord_seconds, zero_ok=True)
    if config.dock.usb_power is not None and not config.dock.usb_power.startswith("/"):
        raise ConfigError(f"dock.usb_power must be an absolute path (a glob), got {config.dock.usb_power!r}",
                          key="dock.usb_power")
    d = config.dock
    if d.gadget not in GADGET_MODES:
        raise ConfigError(f"dock.gadget must be one of {', '.join(GADGET_MODES)}, got {d.gadget!r}", key="dock.gadget")
    if d.partition is not None and not d.partition.startswith("/dev/"):
        raise ConfigError(f"dock.partition must be a block device under /dev, got {d.partition!r}",
                          key="dock.partition")
    if d.udc is not None and (not d.udc or "/" in d.udc):
        raise ConfigError(f"dock.udc must be a name in /sys/class/udc, got {d.udc!r}", key="dock.udc")
    if not d.helper_dir.is_absolute():
        raise ConfigError(f"dock.helper_dir must be an absolute path, got {str(d.helper_dir)!r}", key="dock.helper_dir")
    seen: dict[str, str] = {}
    for f in dataclasses.fields(PinsConfig):
        pin = getattr(config.pins, f.name)
        if pin is None:
            continue
        if isinstance(pin, int) and pin < 0:
            raise ConfigError(f"pins.{f.name} must be a GPIO number or pin name, got {pin!r}", key=f"pins.{f.name}")
        norm = f"GPIO{pin}" if isinstance(pin, int) else pin.upper()
        if norm in seen:
            raise ConfigError(f"pins.{f.name} uses {pin!r}, already used by pins.{seen[norm]}", key=f"pins.{f.name}")
        seen[norm] = f.name
