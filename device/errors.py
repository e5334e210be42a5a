"""The root of every error the camera firmware raises.

Each leaf also inherits the builtin it resembles, so code that knows nothing of ours (``except
OSError``) still does the right thing, as gpiozero's ``exc.py`` does.
"""


class DeviceError(Exception):
    """Root error. ``hints`` are extra lines a CLI prints below the one-line message."""

    exit_code = 1

    def __init__(self, message: str, *hints: str):
        super().__init__(message)
        self.hints = list(hints)


class ConfigError(DeviceError, ValueError):
    """The configuration file (or a value in it) is unusable. ``key`` names it, e.g. ``pins.record``."""

    exit_code = 2

    def __init__(self, message: str, *hints: str, key: str | None = None):
        super().__init__(message, *hints)
        self.key = key


class HardwareError(DeviceError, OSError):
    """A GPIO pin, the camera or another piece of hardware cannot be used."""


class StorageFullError(DeviceError, OSError):
    """The outbox has reached its reserve: no new recording may start, a running one is sealed."""


class NotEnrolledError(DeviceError, PermissionError):
    """The camera has no (valid) enrollment record, so it has no recipient to encrypt to."""


class RecorderError(DeviceError, RuntimeError):
    """The recorder could not do what the controller asked (start, bookmark, stop, dock)."""
