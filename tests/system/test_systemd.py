"""The systemd units verify cleanly and keep their exposure at or below 5.0 ("OK")."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SERVICES = sorted(p.name for p in UNITS.glob("*.service"))
MAX_EXPOSURE = 5.0

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (Debian package systemd)"
)


def _installed_copy(tmp_path: Path) -> Path:
    """Copy the units with ExecStart pointing at the scripts this environment installed."""
    bindir = Path(sys.executable).parent
    for unit in UNITS.iterdir():
        text = unit.read_text()
        text = re.sub(r"/usr/local/bin/(bodycam-\w+)", lambda m: str(bindir / m.group(1)), text)
        (tmp_path / unit.name).write_text(text)
    return tmp_path


def test_units_expected_set_present():
    names = {p.name for p in UNITS.iterdir()}
    assert {
        "bodycam-device.service",
        "bodycam-dock.service",
        "bodycam-expire.service",
        "bodycam-expire.timer",
        "bodycam-gadget.path",
        "bodycam-gadget.service",
    } <= names


def _directives(name: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_gadget_path_watches_the_default_helper_dir_and_starts_the_helper():
    from device.config import DockConfig
    from device.docking import GADGET_REQUEST_FILE

    path = _directives("bodycam-gadget.path")
    assert path["PathChanged"] == [str(DockConfig().helper_dir / GADGET_REQUEST_FILE)]
    assert path["Unit"] == ["bodycam-gadget.service"]
    # The request folder lies in the firmware's runtime folder, which the helper's group may pass.
    firmware = _directives("bodycam-device.service")
    assert DockConfig().helper_dir.parent == Path("/run") / firmware["RuntimeDirectory"][0]
    assert firmware["RuntimeDirectoryMode"] == ["0710"] and firmware["User"] == ["bodycam-device"]


def test_gadget_service_root_with_sys_admin_only_and_firmware_unprivileged():
    helper = _directives("bodycam-gadget.service")
    assert helper["ExecStart"][0].endswith("--config /etc/bodycam/device.toml gadget")
    assert helper["Type"] == ["oneshot"] and helper["CapabilityBoundingSet"] == ["CAP_SYS_ADMIN"]
    assert helper["Group"] == ["bodycam-device"] and helper["ProtectKernelTunables"] == ["no"]
    # umount and mount must act in the host's mount namespace: nothing may create a private one.
    for namespaced in ("ProtectSystem", "ReadWritePaths", "PrivateTmp", "PrivateDevices", "ProtectHome",
                       "ProtectKernelModules", "ProtectControlGroups", "ProtectProc", "ProcSubset"):
        assert namespaced not in helper, namespaced
    firmware = _directives("bodycam-device.service")
    assert firmware["CapabilityBoundingSet"] == [""] and "~@privileged @resources @obsolete @mount" in \
        " ".join(firmware["SystemCallFilter"])


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.iterdir()))
def test_systemd_analyze_verify_unit_no_warnings(tmp_path, unit):
    folder = _installed_copy(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(folder / unit)],
        capture_output=True, text=True, cwd=folder,
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, output


@pytest.mark.parametrize("unit", SERVICES)
def test_systemd_analyze_security_service_exposure_at_most_5(tmp_path, unit):
    folder = _installed_copy(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(folder / unit)],
        capture_output=True, text=True, cwd=folder,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout[-2000:]


def test_every_directive_in_services_has_a_comment_nearby():
    """Each hardening block explains itself: a unit without comments cannot be reviewed."""
    for name in SERVICES:
        text = (UNITS / name).read_text()
        assert text.count("\n#") >= 8, f"{name}: hardening directives need their reasons"
