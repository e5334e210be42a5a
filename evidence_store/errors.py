"""The root of every error the store (and the clip format it shares with the camera) raises.

Pure stdlib: the camera imports this through ``evidence_store.clip``.
"""


class EvidenceError(Exception):
    """Root error. ``hints`` are extra lines a CLI prints below the one-line message."""

    exit_code = 1

    def __init__(self, message: str, *hints: str):
        super().__init__(message)
        self.hints = list(hints)


class UsageError(EvidenceError, ValueError):
    """The command line or configuration asks for something that cannot be done."""

    exit_code = 2


class IntegrityError(EvidenceError):
    """Something does not match its hash or signature. ``where`` names the object or log index."""

    exit_code = 3

    def __init__(self, message: str, *hints: str, where: str | None = None):
        super().__init__(message, *hints)
        self.where = where
