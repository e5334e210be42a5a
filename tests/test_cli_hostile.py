"""Every subcommand of the three command lines, fed hostile arguments: one error line, the right
exit code, never a traceback.

Hostile: bytes that are not UTF-8 (through a real subprocess, as a shell passes them), year 9999
and year 1, numbers of thousands of digits, line breaks inside identifiers, path traversal,
overlong texts. Each argument slot has a kind (an identifier, a date, a text, ...) and gets every
hostile value that is invalid for that kind; every command line is otherwise valid, so the
hostile value alone is what must be refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from device.cli import main as device_main
from dock.cli import main as dock_main
from evidence_store.cli import main as evidence_main
from evidence_store.export import export_clip
from evidence_store.store import Store
from tests.clipfactory import DeviceFixture, make_clip
from tests.device._kit import make_camera
from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N, put_and_ingest

REPO = Path(__file__).resolve().parents[1]
NOT_UTF8 = b"cam\xff\xfe-07"
HUGE = "1" + "0" * 5000
HOSTILE = {
    "device": ["cam-07\n", "../x", "x" * 65, HUGE, "9999-12-31T23:59:59Z", "", "cam 07", "cam-07\x00"],
    "clip": ["{clip}\n", "../{clip}", HUGE, "", "{clip}/../x"],
    "officer": ["PK-1\n", "../x", HUGE, "", "PK 1"],
    "date": ["9999-12-31", "9999-12-31T23:59:59Z", "0001-01-01", "0001-01-01T00:00:00Z", HUGE,
             "2026-11-30\n", "2026-11-30Z", "../x", "2026-11-30T10:00:00"],
    "time": ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", HUGE, "2026-11-30T10:00:00Z\n", "2026-11-30Z",
             "2026-11-30T10:00:00"],
    # simulate --clock plays a wrong camera clock, year 1 included: only what datetime cannot hold
    "clock": ["9999-12-31T23:59:59Z", "0000-01-01T00:00:00Z", HUGE, "2026-11-30T10:00:00Z\n", "2026-11-30Z",
              "2026-11-30T10:00:00"],
    "month": ["9999-12", "0001-01", HUGE, "2026-11\n", "2026-13", "../x"],
    "text": ["a\nb", "a\rb", "x" * 1001],
    "number": ["1e999", HUGE, "-1", "nan", "inf", "3\n"],
    "choice": ["evidence\n", "../x"],
    "key": ["junk", HUGE, "a+b+c\n", "bodycam+00000000+" + "A" * 5000],
    "path": [],  # any text is a valid path: only bytes that are not UTF-8 are refused
}
#: The exit code each kind's refusal must give: 2 (usage) for a bad command line; a key that
#: does not parse is a fault of the package check (3), as a wrong key is.
EXPECTED_CODE = {"key": 3}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """A store with one clip, its export package, and a camera outbox enrolled in it."""
    root = tmp_path_factory.mktemp("hostile")
    store = Store.init(root / "store", PASSPHRASE, scrypt_log_n=TEST_LOG_N)
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    clip = make_clip(root / "clips", cam, store.recipients)
    put_and_ingest(store, clip)
    export_clip(store, clip.clip_id, root / "package", reason="court", identities=store.identities(PASSPHRASE))
    store.close()
    (root / "pass").write_bytes(PASSPHRASE)
    camera = make_camera(root / "camera")
    return {"store": str(root / "store"), "clip": clip.clip_id, "package": str(root / "package"),
            "pass": str(root / "pass"), "outbox": str(camera.outbox), "state": str(camera.state),
            "new": str(root / "new"), "root": str(root)}


# (program, module, argv template with "@" for the hostile value, kind of that slot)
S, P = "{store}", "{pass}"
CASES = [
    # bodycam-evidence: every subcommand
    ("evidence", ["--store", "@", "recipient"], "path"),
    ("evidence", ["--store", "{new}", "init", "--passphrase-file", "@"], "path"),
    ("evidence", ["--store", S, "list", "--officer", "@"], "officer"),
    ("evidence", ["--store", S, "list", "--device", "@"], "device"),
    ("evidence", ["--store", S, "list", "--since", "@"], "date"),
    ("evidence", ["--store", S, "list", "--until", "@"], "date"),
    ("evidence", ["--store", S, "show", "@"], "clip"),
    ("evidence", ["--store", S, "verify", "@"], "clip"),
    ("evidence", ["--store", S, "hold", "@", "--case", "A-1", "--reason", "r"], "clip"),
    ("evidence", ["--store", S, "hold", "{clip}", "--case", "@", "--reason", "r"], "text"),
    ("evidence", ["--store", S, "hold", "{clip}", "--case", "A-1", "--reason", "@"], "text"),
    ("evidence", ["--store", S, "hold", "{clip}", "--case", "A-1", "--reason", "r", "--kind", "@"], "choice"),
    ("evidence", ["--store", S, "release", "@", "--case", "A-1", "--reason", "r"], "clip"),
    ("evidence", ["--store", S, "release", "{clip}", "--case", "A-1", "--reason", "@"], "text"),
    ("evidence", ["--store", S, "justify", "@", "--reason", "r"], "clip"),
    ("evidence", ["--store", S, "justify", "{clip}", "--reason", "@"], "text"),
    ("evidence", ["--store", S, "view", "@", "--reason", "r", "--contact-sheet", "{root}/s.png",
                  "--passphrase-file", P], "clip"),
    ("evidence", ["--store", S, "view", "{clip}", "--reason", "@", "--contact-sheet", "{root}/s.png",
                  "--passphrase-file", P], "text"),
    ("evidence", ["--store", S, "view", "{clip}", "--reason", "r", "--contact-sheet", "@",
                  "--passphrase-file", P], "path"),
    ("evidence", ["--store", S, "export", "@", "--out", "{root}/out", "--reason", "r", "--passphrase-file", P], "clip"),
    ("evidence", ["--store", S, "export", "{clip}", "--out", "{root}/out", "--reason", "@",
                  "--passphrase-file", P], "text"),
    ("evidence", ["--store", S, "export", "{clip}", "--out", "@", "--reason", "r", "--passphrase-file", P], "path"),
    ("evidence", ["--store", S, "redact", "@", "--reason", "r", "--out", "{root}/red", "--passphrase-file", P], "clip"),
    ("evidence", ["--store", S, "redact", "{clip}", "--reason", "@", "--out", "{root}/red",
                  "--passphrase-file", P], "text"),
    ("evidence", ["--store", S, "delete", "@", "--reason", "r"], "clip"),
    ("evidence", ["--store", S, "delete", "{clip}", "--reason", "@"], "text"),
    ("evidence", ["--store", S, "approve", "1", "--reason", "@"], "text"),
    ("evidence", ["--store", S, "consistency", "@"], "number"),
    ("evidence", ["verify-export", "@"], "path"),
    ("evidence", ["verify-export", "{package}", "--vkey", "@"], "key"),
    ("evidence", ["--store", S, "expire", "--dry-run", "--now", "@"], "time"),
    ("evidence", ["--store", S, "log", "--clip", "@"], "clip"),
    ("evidence", ["--store", "@", "checkpoint"], "path"),
    ("evidence", ["--store", S, "report", "--month", "@"], "month"),
    # bodycam-dock: every subcommand
    ("dock", ["--store", S, "enroll", "{outbox}", "--device-id", "@"], "device"),
    ("dock", ["--store", S, "assign", "@", "--officer", "PK-1"], "device"),
    ("dock", ["--store", S, "assign", "cam-07", "--officer", "@"], "officer"),
    ("dock", ["--store", S, "revoke", "@", "--reason", "lost"], "device"),
    ("dock", ["--store", S, "revoke", "cam-07", "--reason", "@"], "text"),
    ("dock", ["--store", S, "ingest", "@"], "path"),
    ("dock", ["--store", S, "watch", "@"], "path"),
    ("dock", ["--store", "@", "status"], "path"),
    ("dock", ["--config", "@", "run"], "path"),
    # bodycam-device: every subcommand
    ("device", ["init", "--outbox", "{new}-outbox", "--device-id", "@", "--state", "{new}-state"], "device"),
    ("device", ["init", "--outbox", "@", "--device-id", "cam-09"], "path"),
    ("device", ["--config", "@", "run"], "path"),
    ("device", ["simulate", "--outbox", "{outbox}", "--state", "{state}", "--clock", "@"], "clock"),
    ("device", ["simulate", "--outbox", "{outbox}", "--state", "{state}", "--seconds", "@"], "number"),
    ("device", ["recover", "--outbox", "@"], "path"),
    ("device", ["status", "--outbox", "@"], "path"),
    ("device", ["--config", "@", "gadget"], "path"),
]
MAINS = {"evidence": evidence_main, "dock": dock_main, "device": device_main}
MODULES = {"evidence": "evidence_store.cli", "dock": "dock.cli", "device": "device.cli"}
PROGS = {"evidence": "bodycam-evidence", "dock": "bodycam-dock", "device": "bodycam-device"}


def _fill(template: list[str], world: dict[str, str], value):
    return [value if part == "@" else part.format(**world) for part in template]


def _assert_one_error_line(prog: str, err: str) -> None:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith(("INFO ", "WARNING ", "DEBUG "))]
    assert lines and lines[0].startswith(f"{prog}: error: "), err
    assert all(line.startswith("hint:") for line in lines[1:]), err
    assert sum(": error:" in line for line in err.splitlines()) == 1, err


def _in_process_cases():
    for program, template, kind in CASES:
        for value in HOSTILE[kind]:
            yield pytest.param(program, template, kind, value, id=f"{program}-{'-'.join(template[:4])}-{value[:12]!r}")


@pytest.mark.parametrize("program,template,kind,value", list(_in_process_cases()))
def test_cli_hostile_argument_refused_with_one_line(world, capsys, monkeypatch, program, template, kind, value):
    monkeypatch.delenv("BODYCAM_STORE", raising=False)
    monkeypatch.setenv("BODYCAM_DOCK_STATE", str(Path(world["root"]) / "dock-state"))
    argv = _fill(template, world, value.format(**world))
    code = MAINS[program](argv)
    err = capsys.readouterr().err
    assert code == EXPECTED_CODE.get(kind, 2), err
    if kind == "key":
        return  # a fault list on stdout (verify-export), not an error line
    _assert_one_error_line(PROGS[program], err)


@pytest.mark.parametrize("program,template,kind", [pytest.param(*c, id=f"{c[0]}-{'-'.join(c[1][:4])}") for c in CASES])
def test_cli_hostile_non_utf8_argument_refused_in_subprocess(world, program, template, kind):
    argv = [os.fsencode(a) if isinstance(a, str) else a for a in _fill(template, world, NOT_UTF8)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BODYCAM_")}
    env.update(PYTHONPATH=str(REPO), BODYCAM_DOCK_STATE=str(Path(world["root"]) / "dock-state"), LC_ALL="C.UTF-8")
    done = subprocess.run([sys.executable, "-m", MODULES[program], *argv], capture_output=True, env=env,
                          timeout=60, check=False)
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2, err
    _assert_one_error_line(PROGS[program], err)
    assert re.search(r"argument \d+ is not valid UTF-8", err)


def test_cli_hostile_device_id_with_newline_does_not_enrol_second_device(world, capsys):
    code = dock_main(["--store", world["store"], "enroll", world["outbox"], "--device-id", "cam-07\n"])
    assert code == 2
    capsys.readouterr()
    store = Store.open(world["store"])
    try:
        assert [d for d in store.conn.execute("SELECT device_id FROM devices")] == [("cam-07",)]
    finally:
        store.close()


@pytest.mark.parametrize("check,good,bad", [
    ("check_device_id", "cam-07", "cam-07\n"),
    ("check_device_id", "cam-07", "../x"),
    ("check_clip_id", "01a22f0e-68f1-7831-9f5c-90c61c665be3", "01a22f0e-68f1-7831-9f5c-90c61c665be3\n"),
])
def test_ids_format_checks_match_whole_text_only(check, good, bad):
    # "$" also matches before a final line break: the format checks anchor with \Z.
    from evidence_store.clip import ids
    from evidence_store.clip.errors import FormatError

    assert getattr(ids, check)(good) == good
    with pytest.raises(FormatError):
        getattr(ids, check)(bad)
