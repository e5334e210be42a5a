"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys.

A signed note is UTF-8 text that ends in a newline, a blank line, and one or more signature
lines ``— <key name> base64(key ID || signature)``. The store signs its checkpoints this way
and the camera's enrollment record is a note whose text is JSON, so this module is pure
(stdlib and ``cryptography`` only): the camera imports it through ``evidence_store.clip``.

Keys travel as text in the forms Go's ``golang.org/x/mod/sumdb/note`` uses, so anyone can
check our notes without our code:

- verifier key: ``<name>+<8 hex key ID>+<base64(0x01 || 32-byte public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || 32-byte seed)>``

The key ID is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from evidence_store.clip.errors import FormatError, SignatureError

#: Signature type byte of Ed25519 note signatures (signed-note, "Signature types").
ALG_ED25519 = 0x01
#: Each signature line starts with an em dash and a space.
SIGNATURE_PREFIX = "\u2014 "
#: The text ends in a newline; one more newline (a blank line) separates the signatures.
SIGNATURE_SPLIT = b"\n\n"
#: Prefix of the private-key text form; keeps a signer key from passing for a verifier key.
PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
#: Key ID length in bytes (a big-endian uint32 in front of each signature).
KEY_ID_SIZE = 4
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
#: The spec asks verifiers to accept at least 16 signatures; Go stops at 100. So do we,
#: so a hostile note cannot make us parse without end.
MAX_SIGNATURES = 100


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64 (RFC 4648 section 4); FormatError naming ``what`` otherwise."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise FormatError(f"{what}: not valid base64") from None
    # Refuse non-canonical encodings (stray padding bits) so one value has one text form.
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what}: base64 is not in canonical form")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty and contain neither Unicode spaces nor ``+`` (signed-note)."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, public_key: bytes) -> int:
    """Key ID (uint32) of an Ed25519 key: first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return struct.unpack(">I", digest[:KEY_ID_SIZE])[0]


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not is_valid_key_name(name):
        raise FormatError(f"{what}: key name {name!r} is empty or contains a space or '+'")


def _split_key_text(text: str, what: str) -> tuple[str, int, bytes]:
    """Split ``<name>+<hex id>+<base64(0x01 || key)>`` into (name, key id, 32-byte key)."""
    # Only the first two '+' separate fields: base64 key data may itself hold '+'.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise FormatError(f"{what}: expected <name>+<key id>+<key data>, got {len(parts)} fields")
    name, id_hex, data = parts
    _check_name(name, what)
    if len(id_hex) != 2 * KEY_ID_SIZE or any(c not in "0123456789abcdef" for c in id_hex):
        raise FormatError(f"{what}: key id {id_hex!r} is not 8 lower-case hex digits")
    raw = _b64decode(data, what)
    if len(raw) != 1 + ED25519_KEY_SIZE:
        raise FormatError(f"{what}: key data is {len(raw)} bytes, expected {1 + ED25519_KEY_SIZE}")
    if raw[0] != ALG_ED25519:
        raise FormatError(f"{what}: signature type 0x{raw[0]:02x} is not Ed25519 (0x01)")
    return name, int(id_hex, 16), raw[1:]


class NoteVerifier:
    """An Ed25519 note verifier: ``name``, ``key_hash`` (uint32 key ID), ``public_key``."""

    def __init__(self, name: str, public_key: Ed25519PublicKey):
        _check_name(name, "verifier")
        self.name = name
        self.public_key = public_key
        self._raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_hash = key_id(name, self._raw)

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        """Parse a verifier key ``<name>+<hex id>+<base64>``.

        Raises FormatError if the text is malformed, the algorithm is not Ed25519, or the key
        ID does not match the name and key (a typo in a published key must not pass).
        """
        if not isinstance(text, str):
            raise FormatError("verifier key: expected text")
        text = text.strip()
        if text.startswith(PRIVATE_KEY_PREFIX):
            raise FormatError("verifier key: this is a PRIVATE signer key; publish only the verifier key")
        name, id_, raw = _split_key_text(text, "verifier key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw))
        if verifier.key_hash != id_:
            raise FormatError(
                f"verifier key: key id {id_:08x} does not match name {name!r} and key "
                f"(expected {verifier.key_hash:08x})"
            )
        return verifier

    def vkey(self) -> str:
        """The verifier key text ``<name>+<hex id>+<base64(0x01 || public key)>``."""
        return f"{self.name}+{self.key_hash:08x}+{_b64encode(bytes([ALG_ED25519]) + self._raw)}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True if ``signature`` (64 bytes, without key ID) signs ``text``."""
        try:
            self.public_key.verify(signature, text)
        except InvalidSignature:
            return False
        return True

    def __repr__(self) -> str:
        return f"NoteVerifier({self.name!r}, {self.key_hash:08x})"


class NoteSigner:
    """An Ed25519 note signer. Create with generate_signer, from_private_bytes or from_skey."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey):
        _check_name(name, "signer")
        self.name = name
        self._key = private_key
        self._verifier = NoteVerifier(name, private_key.public_key())
        self.key_hash = self._verifier.key_hash

    @classmethod
    def from_private_bytes(cls, name: str, raw: bytes) -> NoteSigner:
        """Signer from a 32-byte Ed25519 seed. Raises FormatError for a wrong size or name."""
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != ED25519_KEY_SIZE:
            raise FormatError(f"signer {name!r}: private key must be {ED25519_KEY_SIZE} bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(bytes(raw)))

    @classmethod
    def from_skey(cls, text: str) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`` (Go's note.GenerateKey form).

        Raises FormatError if malformed or if the key ID does not match the derived public key.
        """
        if not isinstance(text, str) or not text.strip().startswith(PRIVATE_KEY_PREFIX):
            raise FormatError(f"signer key: must start with {PRIVATE_KEY_PREFIX!r}")
        name, id_, seed = _split_key_text(text.strip()[len(PRIVATE_KEY_PREFIX):], "signer key")
        signer = cls.from_private_bytes(name, seed)
        if signer.key_hash != id_:
            raise FormatError(
                f"signer key: key id {id_:08x} does not match the key (expected {signer.key_hash:08x})"
            )
        return signer

    def private_bytes(self) -> bytes:
        """The 32-byte Ed25519 seed. Keep it secret."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def skey(self) -> str:
        """The private key text ``PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>``."""
        data = _b64encode(bytes([ALG_ED25519]) + self.private_bytes())
        return f"{PRIVATE_KEY_PREFIX}{self.name}+{self.key_hash:08x}+{data}"

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return self._verifier

    def verifier_key(self) -> str:
        """The verifier key text to publish: ``<name>+<hex id>+<base64(0x01 || public key)>``."""
        return self._verifier.vkey()

    def sign(self, text: bytes) -> bytes:
        """Raw 64-byte Ed25519 signature of ``text`` (no key ID)."""
        return self._key.sign(text)

    def __repr__(self) -> str:
        return f"NoteSigner({self.name!r}, {self.key_hash:08x})"


def generate_signer(name: str) -> NoteSigner:
    """A new random signer named ``name``. Raises FormatError for an invalid key name."""
    return NoteSigner(name, Ed25519PrivateKey.generate())


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes without the key ID."""

    name: str
    key_hash: int
    signature: bytes


def _check_text(data: bytes, what: str) -> str:
    """Decode UTF-8 and refuse ASCII control characters other than newline (signed-note)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what}: not valid UTF-8 (byte {exc.start})") from None
    for pos, ch in enumerate(text):
        if ch < "\x20" and ch != "\n":
            raise FormatError(f"{what}: control character U+{ord(ch):04X} at character {pos}")
    return text


def sign_note(text: str, signer: NoteSigner, *more_signers: NoteSigner) -> bytes:
    """Sign ``text`` and return the note bytes: text, a blank line, one line per signer.

    ``text`` must end in a newline and hold no control characters but newlines.
    Raises FormatError otherwise.
    """
    if not isinstance(text, str) or not text.endswith("\n"):
        raise FormatError("note text must be a string ending in a newline")
    body = text.encode("utf-8")
    _check_text(body, "note text")
    lines = []
    for s in (signer, *more_signers):
        sig = struct.pack(">I", s.key_hash) + s.sign(body)
        lines.append(f"{SIGNATURE_PREFIX}{s.name} {_b64encode(sig)}\n")
    return body + b"\n" + "".join(lines).encode("utf-8")


def parse_note(data: bytes) -> tuple[str, list[NoteSignature]]:
    """Split a signed note into its text and its signature lines, verifying nothing.

    Returns (text including its final newline, signatures in order).
    Raises FormatError for invalid UTF-8, control characters, a missing signature block, a
    malformed signature line, or more than MAX_SIGNATURES signatures.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise FormatError("note: expected bytes")
    data = bytes(data)
    _check_text(data, "note")
    # The text may itself hold blank lines: the signatures follow the *last* blank line.
    split = data.rfind(SIGNATURE_SPLIT)
    if split < 0:
        raise FormatError("note: no blank line before a signature block")
    text, block = data[: split + 1], data[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise FormatError("note: the signature block is empty or does not end in a newline")
    lines = block.decode("utf-8").split("\n")[:-1]
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note: {len(lines)} signatures, more than the limit of {MAX_SIGNATURES}")
    signatures = []
    for number, line in enumerate(lines, 1):
        where = f"note signature line {number}"
        if not line.startswith(SIGNATURE_PREFIX):
            raise FormatError(f"{where}: does not start with an em dash and a space")
        name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise FormatError(f"{where}: expected '— <key name> <base64 signature>'")
        _check_name(name, where)
        raw = _b64decode(b64, where)
        if len(raw) < KEY_ID_SIZE + 1:
            raise FormatError(f"{where}: signature is only {len(raw)} bytes")
        key_hash = struct.unpack(">I", raw[:KEY_ID_SIZE])[0]
        signatures.append(NoteSignature(name, key_hash, raw[KEY_ID_SIZE:]))
    return text.decode("utf-8"), signatures


def open_note(data: bytes, verifier: NoteVerifier) -> str:
    """Return the text of note ``data`` if ``verifier`` signed it.

    Signatures by other keys are ignored, as the spec requires (they may be witnesses or a
    rotated key). Every signature that names ``verifier``'s key name *and* key ID is checked.
    Raises FormatError for a malformed note, SignatureError if a signature by the key fails
    or if the key signed nothing.
    """
    text, signatures = parse_note(data)
    body = text.encode("utf-8")
    where = f"{verifier.name}+{verifier.key_hash:08x}"
    verified = False
    for number, sig in enumerate(signatures, 1):
        if sig.name != verifier.name or sig.key_hash != verifier.key_hash:
            continue
        if len(sig.signature) != ED25519_SIGNATURE_SIZE or not verifier.verify(body, sig.signature):
            raise SignatureError(
                f"note signature line {number} by {where} does not verify: "
                "the note was altered after signing or the signature is damaged",
                where=where,
            )
        verified = True
    if not verified:
        found = ", ".join(f"{s.name}+{s.key_hash:08x}" for s in signatures)
        raise SignatureError(
            f"note is not signed by {where} (signatures found: {found})",
            "check that the verifier key is the one published for this store or camera",
            where=where,
        )
    return text
