"""Privilege separation for docking: the unprivileged firmware's RequestedGadget asks, the root
helper (``bodycam-device gadget``, run by bodycam-gadget.service) performs the request with a
ConfigfsGadget and answers; stale answers, errors, silence and bad requests end in one line."""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace

import pytest

from device import cli
from device.config import parse_config
from device.docking import (
    GADGET_REQUEST_FILE,
    GADGET_STATE_FILE,
    GadgetRequestError,
    RequestedGadget,
    parse_gadget_request,
    serve_gadget_requests,
)
from device.errors import ConfigError, HardwareError
from tests.clock import FakeClock
from tests.device._kit import DEVICE_ID

PARTITION = "/dev/mmcblk0p3"
UDC = "fe980000.usb"


class Helper:
    """The root side, run where systemd's path unit would start it: from the firmware's wait.

    ``main([... 'gadget'])`` runs against a fake configfs root and a fake ``run`` that records
    umount/fsck/mount (as in test_docking.py); ``fsck_code`` above 1 makes fsck fail.
    """

    def __init__(self, tmp_path, monkeypatch, *, fsck_code: int = 0):
        self.folder = tmp_path / "run" / "gadget"
        self.configfs = tmp_path / "configfs"
        self.outbox = tmp_path / "outbox"
        self.configfs.mkdir()
        self.outbox.mkdir()
        self.commands: list[list[str]] = []
        self.exit_codes: list[int] = []
        self.fsck_code = fsck_code
        self.config = tmp_path / "device.toml"
        self.config.write_text(
            f'[storage]\noutbox = "{self.outbox}"\nstate = "{tmp_path / "state"}"\n'
            f'[dock]\ngadget = "helper"\npartition = "{PARTITION}"\nudc = "{UDC}"\nhelper_dir = "{self.folder}"\n')
        monkeypatch.setattr(cli, "_configfs_gadget",
                            functools.partial(cli._configfs_gadget, root=self.configfs, run=self._run))

    def _run(self, argv, **kw):
        self.commands.append(argv)
        code = self.fsck_code if argv[0] == "fsck" else 0
        stderr = "" if code in (0, 1) else "UNEXPECTED INCONSISTENCY\nrun fsck by hand"
        return SimpleNamespace(returncode=code, stderr=stderr)

    def main(self) -> int:
        code = cli.main(["--config", str(self.config), "gadget"])
        self.exit_codes.append(code)
        return code

    @property
    def udc(self) -> str:
        return (self.configfs / "bodycam" / "UDC").read_text().strip()


class FakeTime:
    """``monotonic`` and ``sleep`` for RequestedGadget on the test clock (tests/clock.py); a sleep
    moves it on. ``on_sleep`` runs once per sleep."""

    def __init__(self, on_sleep=None):
        self.clock = FakeClock()
        self.sleeps = 0
        self.on_sleep = on_sleep

    @property
    def now(self) -> float:
        return self.clock.monotonic()

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.clock.advance(seconds)
        if self.on_sleep is not None:
            self.on_sleep()


def requested(folder, fake: FakeTime, **kw) -> RequestedGadget:
    ids = (f"{n:016x}" for n in itertools.count(0xA0))
    return RequestedGadget(folder, monotonic=fake.monotonic, sleep=fake.sleep, new_id=lambda: next(ids), **kw)


def test_requested_gadget_round_trip_through_gadget_command_attaches_and_detaches(tmp_path, monkeypatch):
    helper = Helper(tmp_path, monkeypatch)
    fake = FakeTime(on_sleep=helper.main)  # systemd starts the helper once the request is there
    pings = []
    gadget = requested(helper.folder, fake, keepalive=lambda: pings.append(fake.now))
    gadget.attach(DEVICE_ID)
    assert helper.exit_codes == [0]
    assert (helper.configfs / "bodycam/strings/0x409/serialnumber").read_text().strip() == DEVICE_ID
    assert (helper.configfs / "bodycam/functions/mass_storage.usb0/lun.0/file").read_text().strip() == PARTITION
    assert helper.udc == UDC and helper.commands == [["umount", str(helper.outbox)]]
    assert (helper.folder / GADGET_STATE_FILE).read_text() == "00000000000000a0 attached\n"
    assert pings  # the watchdog is kept alive while waiting
    gadget.detach()
    assert helper.exit_codes == [0, 0] and helper.udc == ""
    assert [c[0] for c in helper.commands] == ["umount", "fsck", "mount"]
    assert (helper.folder / GADGET_STATE_FILE).read_text() == "00000000000000a1 detached\n"
    assert (helper.folder / GADGET_REQUEST_FILE).read_text() == "00000000000000a1 detach\n"


def test_gadget_command_detach_without_configured_partition_uses_exposed_one(tmp_path, monkeypatch):
    helper = Helper(tmp_path, monkeypatch)
    helper.config.write_text(helper.config.read_text().replace(f'partition = "{PARTITION}"\n', ""))
    (helper.configfs / "bodycam/functions/mass_storage.usb0/lun.0").mkdir(parents=True)
    (helper.configfs / "bodycam/functions/mass_storage.usb0/lun.0/file").write_text("/dev/sda1\n")
    gadget = requested(helper.folder, FakeTime(on_sleep=helper.main))
    gadget.detach()
    assert helper.commands[-2:] == [["fsck", "-p", "/dev/sda1"],
                                    ["mount", "-o", "nosuid,nodev,noexec", "/dev/sda1", str(helper.outbox)]]


def test_requested_gadget_helper_error_raises_one_line_hardware_error(tmp_path, monkeypatch):
    helper = Helper(tmp_path, monkeypatch, fsck_code=4)
    gadget = requested(helper.folder, FakeTime(on_sleep=helper.main))
    gadget.attach(DEVICE_ID)
    with pytest.raises(HardwareError, match=r"^gadget helper could not detach: .*fsck -p /dev/mmcblk0p3 failed "
                                            r"\(exit 4\): UNEXPECTED INCONSISTENCY run fsck by hand$") as info:
        gadget.detach()
    assert "\n" not in str(info.value)
    assert helper.exit_codes == [0, 0]  # an answered failure: the unit must not hit its start limit
    state = (helper.folder / GADGET_STATE_FILE).read_text()
    assert state.startswith("00000000000000a1 error: ") and state.count("\n") == 1


def test_requested_gadget_error_answer_written_by_helper(tmp_path):
    folder = tmp_path / "gadget"

    def answer():
        request_id = (folder / GADGET_REQUEST_FILE).read_text().split()[0]
        (folder / GADGET_STATE_FILE).write_text(f"{request_id} error: fsck failed\n")
    gadget = requested(folder, FakeTime(on_sleep=answer))
    with pytest.raises(HardwareError, match=r"^gadget helper could not attach: fsck failed$"):
        gadget.attach(DEVICE_ID)


def test_requested_gadget_no_answer_times_out_with_hint(tmp_path):
    fake = FakeTime()
    gadget = requested(tmp_path / "gadget", fake, timeout=60)
    with pytest.raises(HardwareError, match=r"did not answer the attach request within 60 s") as info:
        gadget.attach(DEVICE_ID)
    assert fake.now >= 1060
    assert info.value.hints == ["hint: systemctl status bodycam-gadget.path bodycam-gadget.service"]


def test_requested_gadget_stale_answer_with_old_id_ignored(tmp_path):
    folder = tmp_path / "gadget"
    folder.mkdir()
    # An answer to a request that timed out before a restart: same action, another id.
    (folder / GADGET_STATE_FILE).write_text("00000000000000ff attached\n")
    fake = FakeTime()
    with pytest.raises(HardwareError, match="did not answer"):
        requested(folder, fake, timeout=5).attach(DEVICE_ID)
    assert fake.sleeps == 20  # kept polling the whole time: the stale answer never counted


def test_gadget_command_answers_each_request_once(tmp_path, monkeypatch):
    # A spurious path event (the helper's own answer written beside the request) starts the
    # helper again: it must not mount a mounted partition and overwrite the answer.
    helper = Helper(tmp_path, monkeypatch)
    requested(helper.folder, FakeTime(on_sleep=helper.main)).attach(DEVICE_ID)
    assert helper.main() == 0
    assert helper.commands == [["umount", str(helper.outbox)]]
    assert (helper.folder / GADGET_STATE_FILE).read_text() == "00000000000000a0 attached\n"


@pytest.mark.parametrize("text", ["", "attach cam-1\n", "00000000000000a0 format /dev/sda\n",
                                  "00000000000000a0 attach ../../etc\n", "00000000000000a0 attach\n"])
def test_gadget_command_malformed_request_exit_3_one_line(tmp_path, monkeypatch, capsys, text):
    helper = Helper(tmp_path, monkeypatch)
    helper.folder.mkdir(parents=True)
    (helper.folder / GADGET_REQUEST_FILE).write_text(text)
    assert helper.main() == 3
    err = capsys.readouterr().err
    assert err.startswith("bodycam-device: error: gadget request") and err.count("\n") == 1
    assert "Traceback" not in err and helper.commands == []
    assert not (helper.folder / GADGET_STATE_FILE).exists()


def test_gadget_command_missing_request_exit_3(tmp_path, monkeypatch, capsys):
    helper = Helper(tmp_path, monkeypatch)
    assert helper.main() == 3
    assert "does not exist" in capsys.readouterr().err


def test_parse_gadget_request_attach_and_detach():
    assert parse_gadget_request("0123456789abcdef attach cam-0042\n") == ("0123456789abcdef", "attach", "cam-0042")
    assert parse_gadget_request("0123456789abcdef detach") == ("0123456789abcdef", "detach", None)
    with pytest.raises(GadgetRequestError):
        parse_gadget_request("0123456789abcdef detach now")


def test_serve_gadget_requests_answers_request_replaced_while_running(tmp_path):
    # The firmware timed out and asked again while the helper was busy: systemd would not start
    # the helper again for it, so the helper looks once more before it exits.
    folder = tmp_path / "gadget"
    folder.mkdir()
    (folder / GADGET_REQUEST_FILE).write_text("00000000000000a0 attach cam-0042\n")
    calls = []

    class Gadget:
        def attach(self, serial):
            calls.append(("attach", serial))
            (folder / GADGET_REQUEST_FILE).write_text("00000000000000a1 detach\n")

        def detach(self):
            calls.append(("detach",))
    assert serve_gadget_requests(folder, lambda action: Gadget()) == 2
    assert calls == [("attach", "cam-0042"), ("detach",)]
    assert (folder / GADGET_STATE_FILE).read_text() == "00000000000000a1 detached\n"


def test_config_dock_gadget_defaults_to_helper():
    dock = parse_config({}).dock
    assert dock.gadget == "helper" and str(dock.helper_dir) == "/run/bodycam-device/gadget"


@pytest.mark.parametrize("dock, key", [({"gadget": "root"}, "dock.gadget"),
                                       ({"partition": "mmcblk0p3"}, "dock.partition"),
                                       ({"udc": "../x"}, "dock.udc"),
                                       ({"helper_dir": "run/gadget"}, "dock.helper_dir")])
def test_config_dock_gadget_bad_values_one_line_error(dock, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        parse_config({"dock": dock})
    assert info.value.key == key and "\n" not in str(info.value)


def test_cli_run_gadget_choice_follows_config(tmp_path):
    notifier = SimpleNamespace(watchdog=lambda: True)
    helper = cli._make_gadget(parse_config({"dock": {"helper_dir": str(tmp_path)}}), notifier)
    assert isinstance(helper, RequestedGadget) and helper.folder == tmp_path
    assert cli._make_gadget(parse_config({"dock": {"gadget": "none"}}), notifier) is None
