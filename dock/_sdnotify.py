"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``; a no-op when it is unset.

Why a datagram of our own: libsystemd is not a dependency we want on the dock for four words
(READY, WATCHDOG, STATUS, STOPPING), and the protocol is one sendto().
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends notifications to systemd. ``environ`` defaults to ``os.environ`` (tests pass a dict)."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self.socket_path = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds: float | None = None
        # WATCHDOG_PID names the process systemd expects pings from; another one must stay quiet.
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1e6

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; False when not under systemd or the send failed."""
        if not self.socket_path:
            return False
        address = self.socket_path
        if address.startswith("@"):  # Linux abstract namespace
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), address)
        except OSError as exc:
            # A lost notification must never stop an ingest; systemd's watchdog will tell.
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
