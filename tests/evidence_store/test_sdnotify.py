"""sd_notify (evidence_store.clip.sdnotify), which the camera and the dock daemons share."""

from __future__ import annotations

import os
import socket

import pytest

from evidence_store.clip.sdnotify import SdNotifier


@pytest.fixture
def listener(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)  # only a guard: the datagram is already queued when recv runs
    yield str(path), sock
    sock.close()


def test_sdnotify_without_socket_is_a_noop():
    notifier = SdNotifier(environ={})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval() is None


def test_sdnotify_sends_datagrams_to_notify_socket(listener):
    path, sock = listener
    notifier = SdNotifier(environ={"NOTIFY_SOCKET": path})
    assert notifier.ready()
    assert sock.recv(100) == b"READY=1"
    assert notifier.notify("STATUS=recording", "WATCHDOG=1")
    assert sock.recv(100) == b"STATUS=recording\nWATCHDOG=1"


def test_sdnotify_unreachable_socket_returns_false(tmp_path):
    assert SdNotifier(environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}).watchdog() is False


def test_sdnotify_watchdog_interval_is_half_of_watchdog_usec():
    env = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert SdNotifier(environ=env).watchdog_interval() == 5.0
    env["WATCHDOG_PID"] = "1"
    assert SdNotifier(environ=env).watchdog_interval() is None  # meant for another process


def test_sdnotify_ready_with_status_is_one_datagram(listener):
    path, sock = listener
    assert SdNotifier(environ={"NOTIFY_SOCKET": path}).ready("waiting for cameras")
    assert sock.recv(100) == b"READY=1\nSTATUS=waiting for cameras"
