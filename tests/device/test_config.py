"""Configuration loading, its errors, and profile narrowing."""

from __future__ import annotations

from pathlib import Path

import pytest

from device import config as config_module
from device.config import (
    ControlsConfig,
    DeviceConfig,
    ProfileConfig,
    effective_profile,
    load_config,
    parse_config,
)
from device.errors import ConfigError, DeviceError, NotEnrolledError, StorageFullError
from evidence_store.clip.errors import FormatError
from evidence_store.clip.profile import NRW, Profile

FULL = """
[pins]
record = 17
emergency = 27
homes = "GPIO22"
dock = 23
led_red = 5
led_amber = 6
led_green = 13
buzzer = 19

[controls]
announcement_seconds = 4
announcement_sound = "/usr/share/bodycam/announcement.wav"
reminder_interval_seconds = 20
hold_seconds = 2.0
debounce_seconds = 0.03

[storage]
outbox = "/srv/bodycam/outbox"
state = "/var/lib/bodycam"
reserve_mib = 1024
segment_seconds = 30

[camera]
backend = "v4l2"
width = 1280
height = 720
fps = 30
bitrate = 4000000
device = "/dev/video2"

[profile]
prerecord_seconds = 0
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


def test_config_full_file_loads_every_value(tmp_path):
    path = write(tmp_path, FULL)
    config = load_config(path)
    assert config.source == path
    assert config.pins.homes == "GPIO22" and config.pins.dock == 23
    assert config.controls.announcement_seconds == 4.0
    assert config.controls.announcement_sound == Path("/usr/share/bodycam/announcement.wav")
    assert config.controls.hold_seconds == 2.0
    assert config.storage.outbox == Path("/srv/bodycam/outbox") and config.storage.reserve_mib == 1024
    assert config.camera.backend == "v4l2" and config.camera.fps == 30.0
    assert config.profile.prerecord_seconds == 0


def test_config_empty_file_gives_defaults(tmp_path):
    config = load_config(write(tmp_path, ""))
    assert config.controls.announcement_seconds == 3.0
    assert config.controls.hold_seconds == 1.5
    assert config.storage.segment_seconds == 60.0
    assert config.pins.homes is None
    assert config.camera.backend == "picamera2"
    assert config == DeviceConfig(source=config.source)


def test_config_docstring_example_parses(tmp_path):
    doc = config_module.__doc__
    example = "\n".join(line[4:] for line in doc[doc.index("[pins]") - 4:doc.index("Unknown sections")].splitlines())
    config = load_config(write(tmp_path, example))
    assert config.pins.homes == 22
    assert config.dock.usb_power == "/sys/class/power_supply/*/online"


@pytest.mark.parametrize("text, key, message", [
    ("[controls]\nhold_time = 1\n", "controls.hold_time", "unknown key controls.hold_time"),
    ("[camra]\n", "camra", r"unknown section \[camra\]"),
    ("[controls]\nhold_seconds = \"long\"\n", "controls.hold_seconds", "must be float"),
    ("[pins]\nrecord = true\n", "pins.record", "must be int or str"),
    ("[controls]\nannouncement_seconds = 0\n", "controls.announcement_seconds", "more than zero"),
    ("[controls]\ndebounce_seconds = 2\n", "controls.debounce_seconds", "shorter than"),
    ("[camera]\nbackend = \"webcam\"\n", "camera.backend", "must be one of"),
    ("[pins]\nbuzzer = 17\n", "pins.buzzer", "already used by pins.record"),
    ("[pins]\nled_red = \"GPIO27\"\n", "pins.led_red", "already used by pins.emergency"),
    ("[storage]\nreserve_mib = -1\n", "storage.reserve_mib", "zero or more"),
    ("[storage]\noutbox = \"\"\n", "storage.outbox", "must be path"),
    ("[profile]\nprerecord_seconds = -5\n", "profile.prerecord_seconds", "zero or more"),
    ("pins = 3\n", "pins", "must be a table"),
    ("[storage]\noutbox = \"/srv/ob\"\nstate = \"/srv/ob/st\"\n", "storage.state", "is inside storage.outbox"),
    ("[storage]\noutbox = \"/srv/ob\"\nstate = \"/srv/x/../ob\"\n", "storage.state", "is inside storage.outbox"),
    ("[dock]\nusb_power = \"power_supply/*/online\"\n", "dock.usb_power", "absolute path"),
])
def test_config_bad_value_raises_config_error_naming_key(tmp_path, text, key, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == key
    assert isinstance(info.value, ValueError)


def test_config_missing_file_raises_with_hint(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_config(tmp_path / "nope.toml")
    assert any("--config" in hint for hint in info.value.hints)


def test_config_bad_toml_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[pins\n"))


def test_config_errors_inherit_root_and_builtins():
    assert issubclass(ConfigError, DeviceError) and issubclass(ConfigError, ValueError)
    assert issubclass(StorageFullError, OSError) and issubclass(NotEnrolledError, DeviceError)
    error = StorageFullError("outbox below reserve", "dock the camera")
    assert error.hints == ["dock the camera"]


def test_config_parse_mapping_int_becomes_float():
    config = parse_config({"controls": {"reminder_interval_seconds": 15}})
    assert config.controls == ControlsConfig(reminder_interval_seconds=15.0)


# --- profiles ---------------------------------------------------------------------------------

BW_LIKE = Profile(name="BW", prerecord_max_seconds=60, retention_days=14)


def test_profile_default_is_nrw_without_prerecording():
    assert Profile() == NRW
    assert (NRW.name, NRW.prerecord_max_seconds, NRW.retention_days, NRW.announcement_required) == ("NRW", 0, 14, True)


def test_profile_narrowing_cannot_switch_on_buffer_nrw_forbids():
    assert effective_profile(NRW, ProfileConfig(prerecord_seconds=30)).prerecord_max_seconds == 0


def test_profile_narrowing_cannot_lengthen_buffer(caplog):
    profile = effective_profile(BW_LIKE, ProfileConfig(prerecord_seconds=90))
    assert profile.prerecord_max_seconds == 60
    assert "allows at most 60 s" in caplog.text


def test_profile_narrowing_can_shorten_or_switch_off_buffer():
    assert effective_profile(BW_LIKE, ProfileConfig(prerecord_seconds=20)).prerecord_max_seconds == 20
    assert effective_profile(BW_LIKE, DeviceConfig()).prerecord_max_seconds == 0


def test_profile_narrowing_keeps_the_rest_of_the_enrolled_profile():
    profile = effective_profile(BW_LIKE, ProfileConfig(prerecord_seconds=10))
    assert (profile.name, profile.retention_days, profile.announcement_required) == ("BW", 14, True)


def test_profile_from_mapping_checks_values():
    assert Profile.from_mapping({"name": "BW", "prerecord_max_seconds": 60}) == BW_LIKE
    with pytest.raises(FormatError, match="profile.prerecord_max_seconds must be zero or more"):
        Profile.from_mapping({"prerecord_max_seconds": -1})
    with pytest.raises(FormatError, match="unknown key profile.buffer"):
        Profile.from_mapping({"buffer": 5})
    with pytest.raises(FormatError, match="retention_days"):
        Profile.from_mapping({"retention_days": 0})
    with pytest.raises(FormatError, match="retention_days must be int"):
        Profile.from_mapping({"retention_days": True})
