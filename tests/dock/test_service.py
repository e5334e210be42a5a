"""The long-running side: watched folders (watchdog/inotify), the daemon with sd_notify, config."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from dock.config import ConfigError, load_config, parse_config
from dock.daemon import Daemon
from dock.udev import UdevEvent
from dock.watch import FolderWatcher, sealed_outbox
from evidence_store.clip.sdnotify import SdNotifier
from evidence_store.store import Store
from tests.dock.conftest import new_camera
from tests.dock.helpers import FolderMounter, outbox_clip_names, stored_clips


def _wait(predicate, timeout: float = 10.0) -> bool:
    # Real inotify and real threads: poll briefly instead of sleeping a fixed time.
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_watch_sealed_outbox_only_for_manifests(tmp_path):
    box = tmp_path / "o"
    assert sealed_outbox(str(box / "clips" / "x" / "manifest"), [box]) == box
    assert sealed_outbox(str(box / "clips" / "x" / "seg-00000.age"), [box]) is None
    assert sealed_outbox(str(box / "receipts" / "manifest"), [box]) is None
    assert sealed_outbox(str(tmp_path / "p" / "clips" / "x" / "manifest"), [box]) is None


def test_watch_clip_ingested_once_sealed_not_before(camera, ingester, store_root):
    first = camera.clip()
    watcher = FolderWatcher([camera.outbox.root], ingester.ingest, settle_seconds=0.05)
    watcher.start()
    try:
        assert _wait(lambda: first.clip_id in stored_clips(store_root) and watcher.idle())
        # A clip being recorded: segments and journal but no manifest yet.
        second = camera.clip()
        manifest = (second.folder / "manifest").read_bytes()
        (second.folder / "manifest").unlink()
        assert _wait(watcher.idle)
        time.sleep(0.2)
        assert second.clip_id not in stored_clips(store_root)
        # Sealed the camera's way: written under a temporary name, then renamed.
        (second.folder / ".manifest.tmp").write_bytes(manifest)
        os.replace(second.folder / ".manifest.tmp", second.folder / "manifest")
        assert _wait(lambda: second.clip_id in stored_clips(store_root) and watcher.idle())
        assert outbox_clip_names(camera.outbox) == []
    finally:
        watcher.stop()


def test_watch_camera_held_by_another_dock_does_not_hold_the_other_folders(camera, store, ingester, store_root,
                                                                            tmp_path):
    """Another dock holds cam-07 (its store-wide lock): this dock waits for it in that folder's
    worker, while cam-08's folder is ingested at once; cam-07's clip follows once released."""
    other = new_camera(store, tmp_path / "outbox-08", "cam-08")
    held_clip, free_clip = camera.clip(), other.clip()
    release, holding = threading.Event(), threading.Event()

    def other_dock() -> None:
        with Store.open(store_root) as elsewhere, elsewhere.hold_camera(camera.device_id):
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=other_dock, daemon=True)
    holder.start()
    assert holding.wait(10)
    watcher = FolderWatcher([camera.outbox.root, other.outbox.root], ingester.ingest, settle_seconds=0.05)
    watcher.start()
    try:
        assert _wait(lambda: free_clip.clip_id in stored_clips(store_root))
        assert held_clip.clip_id not in stored_clips(store_root) and not watcher.idle()
        release.set()
        assert _wait(lambda: held_clip.clip_id in stored_clips(store_root) and watcher.idle())
        assert outbox_clip_names(camera.outbox) == [] and outbox_clip_names(other.outbox) == []
    finally:
        release.set()
        watcher.stop()
        holder.join(10)


def _listen(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    return sock, path


def test_config_full_file_parsed(tmp_path):
    path = tmp_path / "dock.toml"
    path.write_text('store = "/srv/store"\nwatch = ["/srv/in/a"]\nstate_dir = "/tmp/s"\n'
                    '[udev]\nenabled = false\nlabel = "CAM"\nmount_root = "/run/x"\n')
    config = load_config(path, environ={})
    assert config.store == Path("/srv/store") and config.watch == [Path("/srv/in/a")]
    assert not config.udev.enabled and config.udev.label == "CAM" and config.udev.mount_root == Path("/run/x")


def test_config_unknown_key_refused():
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({"store": "/s", "udev": {"lable": "X"}}, environ={})


def test_config_store_from_environment_else_refused():
    assert parse_config({}, environ={"BODYCAM_STORE": "/s"}).store == Path("/s")
    with pytest.raises(ConfigError, match="'store' is required"):
        parse_config({}, environ={})


def test_daemon_ready_then_docks_cameras_from_events_and_folders(store, store_root, state_dir, tmp_path):
    from tests.dock.conftest import new_camera

    docked = new_camera(store, tmp_path / "docked", "cam-d")
    folder = new_camera(store, tmp_path / "folder", "cam-f")
    docked_clip, folder_clip = docked.clip(), folder.clip()
    config = parse_config({"store": str(store_root), "watch": [str(folder.outbox.root)], "state_dir": str(state_dir),
                           "udev": {"mount_root": str(tmp_path / "mnt")}}, environ={})
    sock, path = _listen(tmp_path)
    events = [UdevEvent("add", "/dev/sdc1", "BODYCAM", "cam-d"), UdevEvent("add", "/dev/sdd1", "BODYCAM", "cam-nobody")]
    daemon = Daemon(config, lambda: Store.open(store_root), mounter=FolderMounter({"/dev/sdc1": docked.outbox.root}),
                    events=events, notifier=SdNotifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}))
    runner = threading.Thread(target=lambda: setattr(daemon, "code", daemon.serve()))
    with sock:
        runner.start()
        try:
            assert sock.recv(1024).startswith(b"READY=1")
            assert _wait(lambda: set(stored_clips(store_root)) == {docked_clip.clip_id, folder_clip.clip_id})
            assert sock.recv(1024) == b"WATCHDOG=1"
        finally:
            daemon.stop_event.set()
            runner.join(timeout=30)
    assert daemon.code == 0
    assert _wait(lambda: outbox_clip_names(docked.outbox) == [] and outbox_clip_names(folder.outbox) == [])
