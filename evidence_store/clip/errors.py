"""Errors of the clip format. Leaf errors also inherit a builtin, as gpiozero's do."""

from evidence_store.errors import EvidenceError, IntegrityError


class ClipError(EvidenceError):
    """Root of clip-format errors."""


class FormatError(ClipError, ValueError):
    """A file does not follow the format (age header, manifest, journal, outbox record)."""

    exit_code = 3


class DecryptError(ClipError):
    """No identity matches, the passphrase is wrong, or a chunk fails authentication."""

    exit_code = 4


class HeaderError(FormatError):
    """An age header that does not follow the format (the reference ``age`` refuses it too)."""


class HeaderMacError(DecryptError):
    """The file key was found but the age header's MAC does not verify: the header was altered."""


class PayloadError(DecryptError):
    """The age payload fails: a chunk does not authenticate, is out of place, or data follows
    the final chunk. Plaintext before the failing chunk may already have been released."""


class CutError(PayloadError):
    """The segment ends before its final chunk: use salvage to read what is complete."""

    def __init__(self, message: str, *hints: str, plaintext_bytes: int = 0, offset: int = 0):
        super().__init__(message, *hints)
        self.plaintext_bytes = plaintext_bytes
        self.offset = offset


class SignatureError(IntegrityError, ClipError):
    """An Ed25519 signature does not verify."""
