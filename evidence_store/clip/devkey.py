"""Ed25519 device keys: the camera signs its journal and manifests with one.

The private key lives in the camera's state folder, which the dock never sees; the outbox only
carries the public key (device.json), and the store trusts it once it is enrolled.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from evidence_store.clip.errors import FormatError, SignatureError
from evidence_store.clip.fsutil import atomic_write

PRIVATE_KEY_FILE = "device.key"
PRIVATE_KEY_PREFIX = "BODYCAM-DEVICE-KEY-V1 "

# Domain separation: a signature over one kind of record can never be replayed as another.
JOURNAL_CONTEXT = b"bodycam.journal.v1\n"
MANIFEST_CONTEXT = b"bodycam.manifest.v1\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str, what: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise FormatError(f"{what}: not valid base64") from None
    # Stray padding bits decode to the same bytes: without this check a flipped bit in a
    # signature would go unnoticed while changing the line's or manifest's hash.
    if b64(data) != text:
        raise FormatError(f"{what}: base64 is not in canonical form")
    return data


@dataclass(frozen=True)
class DevicePublicKey:
    raw: bytes

    @classmethod
    def parse(cls, text: str) -> DevicePublicKey:
        raw = unb64(text, "device public key")
        if len(raw) != 32:
            raise FormatError("device public key: must be 32 bytes")
        return cls(raw)

    def __str__(self) -> str:
        return b64(self.raw)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def verify(self, context: bytes, message: bytes, signature: bytes, what: str) -> None:
        """Raise SignatureError naming ``what`` unless ``signature`` is valid."""
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, context + message)
        except InvalidSignature:
            raise SignatureError(f"{what}: signature does not verify", where=what) from None


@dataclass(frozen=True)
class DeviceKey:
    seed: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> DeviceKey:
        return cls(Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def public(self) -> DevicePublicKey:
        return DevicePublicKey(Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw())

    def sign(self, context: bytes, message: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(context + message)

    def save(self, state_dir: str | os.PathLike) -> Path:
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state / PRIVATE_KEY_FILE
        if path.exists():
            raise FormatError(f"{path}: a device key exists already; refusing to replace it")
        atomic_write(path, (PRIVATE_KEY_PREFIX + b64(self.seed) + "\n").encode(), mode=0o600)
        return path

    @classmethod
    def load(cls, state_dir: str | os.PathLike) -> DeviceKey:
        path = Path(state_dir) / PRIVATE_KEY_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FormatError(f"{path}: no device key (run 'bodycam-device init' first)") from None
        if not text.startswith(PRIVATE_KEY_PREFIX):
            raise FormatError(f"{path}: not a bodycam device key")
        seed = unb64(text[len(PRIVATE_KEY_PREFIX) :].strip(), str(path))
        if len(seed) != 32:
            raise FormatError(f"{path}: device key has the wrong length")
        return cls(seed)
