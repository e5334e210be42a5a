"""The daemon's configuration: /etc/bodycam/dock.toml.

    store = "/srv/bodycam/store"              # the evidence store (BODYCAM_STORE also works)
    watch = ["/srv/bodycam/inbox/cam-07"]     # outbox folders to watch (optional)
    state_dir = "/var/lib/bodycam-dock"       # per-camera locks and docking reports (BODYCAM_DOCK_STATE)

    [udev]
    enabled = true                            # false: watched folders only
    label = "BODYCAM"                         # filesystem label of a camera's evidence partition
    mount_root = "/run/bodycam-dock/mnt"      # mount points live here, one per camera

Unknown keys are an error: a typo such as ``lable`` would otherwise silently disable docking.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dock.errors import ConfigError
from evidence_store.clip.tomlfile import read_toml

DEFAULT_CONFIG = Path("/etc/bodycam/dock.toml")
DEFAULT_LABEL = "BODYCAM"
DEFAULT_MOUNT_ROOT = Path("/run/bodycam-dock/mnt")
DEFAULT_STATE_DIR = Path("/var/lib/bodycam-dock")
_TOP_KEYS = {"store", "watch", "state_dir", "udev"}
_UDEV_KEYS = {"enabled", "label", "mount_root"}


@dataclass(frozen=True)
class UdevConfig:
    enabled: bool = True
    label: str = DEFAULT_LABEL
    mount_root: Path = DEFAULT_MOUNT_ROOT


@dataclass(frozen=True)
class DockConfig:
    store: Path
    watch: list[Path] = field(default_factory=list)
    state_dir: Path = DEFAULT_STATE_DIR
    udev: UdevConfig = UdevConfig()


def load_config(path: str | os.PathLike, environ=None) -> DockConfig:
    """Read and check a dock.toml. Raises ConfigError naming the file and the key."""
    env = os.environ if environ is None else environ
    path = Path(path)
    raw = read_toml(path, ConfigError, "hint: see dock/config.py for an example")
    return parse_config(raw, str(path), env)


def parse_config(raw: dict, where: str = "dock.toml", environ=None) -> DockConfig:
    env = os.environ if environ is None else environ
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    store = raw.get("store") or env.get("BODYCAM_STORE")
    if not isinstance(store, str) or not store:
        raise ConfigError(f"{where}: 'store' is required (or set BODYCAM_STORE)")
    watch = raw.get("watch", [])
    if not isinstance(watch, list) or not all(isinstance(w, str) and w for w in watch):
        raise ConfigError(f"{where}: 'watch' must be a list of folder paths")
    state_dir = raw.get("state_dir") or env.get("BODYCAM_DOCK_STATE") or str(DEFAULT_STATE_DIR)
    if not isinstance(state_dir, str):
        raise ConfigError(f"{where}: 'state_dir' must be a path")
    udev_raw = raw.get("udev", {})
    if not isinstance(udev_raw, dict):
        raise ConfigError(f"{where}: [udev] must be a table")
    unknown = set(udev_raw) - _UDEV_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) in [udev]: {', '.join(sorted(unknown))}")
    enabled = udev_raw.get("enabled", True)
    label = udev_raw.get("label", DEFAULT_LABEL)
    mount_root = udev_raw.get("mount_root", str(DEFAULT_MOUNT_ROOT))
    if not isinstance(enabled, bool) or not isinstance(label, str) or not label or not isinstance(mount_root, str):
        raise ConfigError(f"{where}: [udev] enabled must be true/false, label and mount_root strings")
    return DockConfig(
        store=Path(store),
        watch=[Path(w) for w in watch],
        state_dir=Path(state_dir),
        udev=UdevConfig(enabled, label, Path(mount_root)),
    )


def default_state_dir(environ=None) -> Path:
    """Where the one-shot commands keep locks and docking reports when no dock.toml is given:
    BODYCAM_DOCK_STATE, else /var/lib/bodycam-dock for root, else the user's state folder. Every
    dock process on one machine must agree on it, or the per-camera lock would not be shared."""
    env = os.environ if environ is None else environ
    if env.get("BODYCAM_DOCK_STATE"):
        return Path(env["BODYCAM_DOCK_STATE"])
    if os.geteuid() == 0:
        return DEFAULT_STATE_DIR
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "bodycam-dock"
