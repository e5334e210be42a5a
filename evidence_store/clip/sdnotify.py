"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET``. A no-op when unset.

The camera's and the dock's daemons both use it. Why our own: libsystemd is not a dependency we
want on a camera or a dock for four words (READY, WATCHDOG, STATUS, STOPPING), and the protocol
is one datagram.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class SdNotifier:
    """Tells systemd READY, WATCHDOG, STOPPING and STATUS. ``socket_path`` defaults to
    ``$NOTIFY_SOCKET``; a leading ``@`` means Linux's abstract namespace."""

    def __init__(self, socket_path: str | None = None, *, environ=None):
        env = os.environ if environ is None else environ
        self.socket_path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")

    @property
    def enabled(self) -> bool:
        return self.socket_path is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half of ``$WATCHDOG_USEC`` (the time systemd waits
        before it kills us, sd_watchdog_enabled(3) advises pinging at half of it), or None if
        systemd set none (or set it for another process: ``$WATCHDOG_PID``)."""
        if not self._watchdog_usec:
            return None
        if self._watchdog_pid and self._watchdog_pid != str(os.getpid()):
            return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 2e6 if usec > 0 else None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ...) as one datagram. False if not under systemd or the
        send failed (logged: a lost notification must not stop the camera)."""
        if self.socket_path is None:
            return False
        address = self.socket_path
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall("\n".join(fields).encode())
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")
