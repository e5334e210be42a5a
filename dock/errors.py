"""Errors of the dock. One root, ``DockError``; leaf errors also inherit a builtin (as gpiozero's do).

``exit_code`` is what ``bodycam-dock`` returns when the error reaches the command line; the table
lives in ``dock/cli.py``'s docstring.
"""

from __future__ import annotations


class DockError(Exception):
    """Root error. ``hints`` are extra lines the CLI prints below the one-line message."""

    exit_code = 1

    def __init__(self, message: str, *hints: str):
        super().__init__(message)
        self.hints = list(hints)


class ConfigError(DockError, ValueError):
    """The command line or /etc/bodycam/dock.toml asks for something that cannot be done."""

    exit_code = 2


class NotEnrolledError(DockError, LookupError):
    """A camera the store does not know: its clips cannot be verified, so nothing is touched."""

    exit_code = 5


class MountError(DockError, OSError):
    """mount(8) or umount(8) failed for a docked camera's partition."""

    exit_code = 6
