"""age v1 (age-encryption.org/v1): X25519 and scrypt recipients, a streaming writer, a reader, salvage.

Why our own implementation rather than shelling out to ``age``: the camera must seal every
complete 64 KiB chunk the moment it exists and know, for its signed journal, exactly how many
ciphertext bytes are on disk and what they hash to. The format is the standard one, so any age
implementation (``age``, ``rage``) decrypts what we write, and we read what they write.

Format, in brief (docs/FORMAT.md has the details we rely on):
  header:  "age-encryption.org/v1\\n", one "-> TYPE ARGS\\n" + base64 body per recipient,
           "--- " + base64(HMAC-SHA256(HKDF(file key, "header"), header up to "---")) + "\\n"
  payload: 16-byte nonce, then chunks of 64 KiB plaintext sealed with ChaCha20-Poly1305 under
           HKDF(file key, salt=nonce, "payload"); chunk nonce = 11-byte big-endian counter ||
           0x01 for the final chunk, 0x00 otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import os
import queue
import threading
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from evidence_store.clip import _bech32
from evidence_store.clip.errors import (
    CutError,
    DecryptError,
    FormatError,
    HeaderError,
    HeaderMacError,
    PayloadError,
)

MAGIC = b"age-encryption.org/v1"
STANZA_PREFIX = b"-> "
MAC_PREFIX = b"---"
X25519_STANZA = "X25519"
SCRYPT_STANZA = "scrypt"
X25519_LABEL = b"age-encryption.org/v1/X25519"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
RECIPIENT_HRP = "age"
IDENTITY_HRP = "AGE-SECRET-KEY-"

CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
SEALED_CHUNK_SIZE = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE = 16
FILE_KEY_SIZE = 16
COLUMNS = 64  # stanza bodies wrap at 64 base64 characters
MAX_HEADER = 64 * 1024  # a header larger than this is garbage, not a recipient list
MAX_SCRYPT_LOG_N = 22  # what age itself accepts by default: bounds the work a hostile file causes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    # age uses unpadded standard base64 and rejects non-canonical encodings.
    if "=" in text or "\n" in text or "\r" in text:
        raise HeaderError(f"age header: {what} is not unpadded base64")
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise HeaderError(f"age header: {what} is not valid base64") from None
    if _b64(data) != text:
        raise HeaderError(f"age header: {what} is not canonical base64")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# --- Keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipient:
    """An X25519 recipient, ``age1...``."""

    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> Recipient:
        hrp, data = _bech32.decode(text.strip())
        if hrp != RECIPIENT_HRP or len(data) != 32 or text.strip() != text.strip().lower():
            raise FormatError(f"not an age X25519 recipient: {text.strip()[:20]}...")
        return cls(data)

    def __str__(self) -> str:
        return _bech32.encode(RECIPIENT_HRP, self.public_key)

    def wrap(self, file_key: bytes) -> Stanza:
        ephemeral = X25519PrivateKey.generate()
        share = ephemeral.public_key().public_bytes_raw()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public_key))
        key = _hkdf(shared, share + self.public_key, X25519_LABEL)
        body = ChaCha20Poly1305(key).encrypt(bytes(12), file_key, None)
        return Stanza(X25519_STANZA, [_b64(share)], body)


@dataclass(frozen=True)
class Identity:
    """An X25519 identity, ``AGE-SECRET-KEY-1...``. Never exists on the camera."""

    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls) -> Identity:
        return cls(X25519PrivateKey.generate().private_bytes_raw())

    @classmethod
    def parse(cls, text: str) -> Identity:
        text = text.strip()
        hrp, data = _bech32.decode(text)
        if hrp != IDENTITY_HRP.lower() or len(data) != 32 or text != text.upper():
            raise FormatError("not an age X25519 identity (AGE-SECRET-KEY-1...)")
        return cls(data)

    def __str__(self) -> str:
        return _bech32.encode(IDENTITY_HRP, self.secret).upper()

    @property
    def recipient(self) -> Recipient:
        key = X25519PrivateKey.from_private_bytes(self.secret)
        return Recipient(key.public_key().public_bytes_raw())

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        own = self.recipient.public_key
        key = X25519PrivateKey.from_private_bytes(self.secret)
        for stanza in stanzas:
            if stanza.type != X25519_STANZA:
                continue
            if len(stanza.args) != 1:
                raise HeaderError("age header: X25519 stanza needs exactly one argument")
            share = _unb64(stanza.args[0], "X25519 share")
            if len(share) != 32 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
                raise HeaderError("age header: malformed X25519 stanza")
            try:
                # cryptography refuses an all-zero shared secret itself (RFC 7748 section 6.1)
                shared = key.exchange(X25519PublicKey.from_public_bytes(share))
            except ValueError:
                shared = bytes(32)
            if shared == bytes(32):
                # As age does: a low-order share is a malformed header, not "no match".
                raise HeaderError("age header: X25519 share is a low-order point")
            wrap_key = _hkdf(shared, share + own, X25519_LABEL)
            try:
                return ChaCha20Poly1305(wrap_key).decrypt(bytes(12), stanza.body, None)
            except InvalidTag:
                continue
        return None


@dataclass(frozen=True)
class Passphrase:
    """scrypt recipient and identity in one: used for the store's passphrase-protected identity."""

    passphrase: bytes = field(repr=False)
    log_n: int = 18  # age's own default work factor

    def wrap(self, file_key: bytes) -> Stanza:
        salt = os.urandom(16)
        key = self._derive(salt, self.log_n)
        body = ChaCha20Poly1305(key).encrypt(bytes(12), file_key, None)
        return Stanza(SCRYPT_STANZA, [_b64(salt), str(self.log_n)], body)

    def _derive(self, salt: bytes, log_n: int) -> bytes:
        return Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=1 << log_n, r=8, p=1).derive(
            self.passphrase
        )

    def unwrap(self, stanzas: Sequence[Stanza]) -> bytes | None:
        scrypt = [s for s in stanzas if s.type == SCRYPT_STANZA]
        if not scrypt:
            return None
        if len(stanzas) != 1:
            raise HeaderError("age header: an scrypt stanza must be the only one")
        (stanza,) = scrypt
        if len(stanza.args) != 2 or not stanza.args[1].isdigit() or stanza.args[1].startswith("0"):
            raise HeaderError("age header: malformed scrypt stanza")
        salt, log_n = _unb64(stanza.args[0], "scrypt salt"), int(stanza.args[1])
        if len(salt) != 16 or len(stanza.body) != FILE_KEY_SIZE + TAG_SIZE:
            raise HeaderError("age header: malformed scrypt stanza")
        if log_n > MAX_SCRYPT_LOG_N:
            raise HeaderError(f"age header: scrypt work factor 2^{stanza.args[1][:6]} is too large")
        try:
            return ChaCha20Poly1305(self._derive(salt, log_n)).decrypt(bytes(12), stanza.body, None)
        except InvalidTag:
            raise DecryptError("wrong passphrase") from None


# --- Header ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stanza:
    type: str
    args: list[str]
    body: bytes

    def encode(self) -> bytes:
        out = STANZA_PREFIX + " ".join([self.type, *self.args]).encode() + b"\n"
        text = _b64(self.body)
        lines = [text[i : i + COLUMNS] for i in range(0, len(text), COLUMNS)]
        if not lines or len(lines[-1]) == COLUMNS:
            lines.append("")  # the body ends with a line shorter than 64 columns
        return out + "".join(line + "\n" for line in lines).encode()


@dataclass(frozen=True)
class Header:
    stanzas: list[Stanza]
    mac: bytes
    raw: bytes  # the header's exact bytes, up to and including the MAC line

    @property
    def mac_input(self) -> bytes:
        return self.raw[: self.raw.rindex(b"\n" + MAC_PREFIX) + 1 + len(MAC_PREFIX)]


def _header_mac(file_key: bytes, mac_input: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), mac_input, hashlib.sha256).digest()


def encode_header(file_key: bytes, stanzas: Sequence[Stanza]) -> bytes:
    body = MAGIC + b"\n" + b"".join(s.encode() for s in stanzas) + MAC_PREFIX
    return body + b" " + _b64(_header_mac(file_key, body)).encode() + b"\n"


def _read_line(src: BinaryIO, consumed: int) -> bytes:
    line = src.readline(MAX_HEADER - consumed + 1)
    if not line.endswith(b"\n"):
        if len(line) > MAX_HEADER - consumed:
            raise HeaderError("age header: too large")
        raise HeaderError("age header: unexpected end of file")
    return line


def _is_arg(text: str) -> bool:
    return bool(text) and all(0x21 <= ord(c) <= 0x7E for c in text)


def parse_header(src: BinaryIO) -> Header:
    """Read an age header from ``src``, leaving it at the payload nonce. Raises FormatError."""
    raw = bytearray()
    first = src.readline(len(MAGIC) + 1)
    raw += first
    if first != MAGIC + b"\n":
        raise HeaderError("not an age file (no age-encryption.org/v1 header)")
    stanzas: list[Stanza] = []
    line = _read_line(src, len(raw))
    raw += line
    while line.startswith(STANZA_PREFIX):
        try:
            words = line[len(STANZA_PREFIX) : -1].decode("ascii").split(" ")
        except UnicodeDecodeError:
            raise HeaderError("age header: stanza line is not ASCII") from None
        if not all(_is_arg(w) for w in words):
            raise HeaderError("age header: malformed stanza line")
        body_text = ""
        while True:
            body_line = _read_line(src, len(raw))
            raw += body_line
            text = body_line[:-1].decode("ascii", errors="replace")
            if len(text) > COLUMNS:
                raise HeaderError("age header: stanza body line longer than 64 columns")
            body_text += text
            if len(text) < COLUMNS:
                break
        stanzas.append(Stanza(words[0], words[1:], _unb64(body_text, "stanza body") if body_text else b""))
        line = _read_line(src, len(raw))
        raw += line
    if not line.startswith(MAC_PREFIX + b" "):
        raise HeaderError("age header: expected a stanza or the MAC line")
    if not stanzas:
        raise HeaderError("age header: no recipient stanzas")
    mac = _unb64(line[len(MAC_PREFIX) + 1 : -1].decode("ascii", errors="replace"), "header MAC")
    if len(mac) != 32:
        raise HeaderError("age header: MAC has the wrong length")
    return Header(stanzas, mac, bytes(raw))


def unwrap_file_key(header: Header, identities: Sequence[Identity | Passphrase]) -> bytes:
    """Find the file key with one of ``identities`` and check the header MAC."""
    for identity in identities:
        file_key = identity.unwrap(header.stanzas)
        if file_key is None:
            continue
        if not hmac.compare_digest(_header_mac(file_key, header.mac_input), header.mac):
            raise HeaderMacError("age header: MAC does not verify (the header was altered)")
        return file_key
    kinds = sorted({s.type for s in header.stanzas})
    raise DecryptError(
        "no identity matches this file",
        f"hint: the file is encrypted to {len(header.stanzas)} recipient(s) of type {', '.join(kinds)}",
    )


# --- Writer ---------------------------------------------------------------------------------


class _Hasher:
    """A SHA-256 fed on its own thread, in order, with back-pressure.

    Why: the writer must hash both plaintext and ciphertext (the journal signs both), and two
    SHA-256 passes cost four times what ChaCha20-Poly1305 does. hashlib and cryptography both
    release the GIL on large buffers, so on a multi-core camera or store the hashes run beside
    the encryption instead of after it. Items must be immutable (bytes, or a view of bytes).
    """

    _DEPTH = 16  # batches in flight; one batch is one write() call's worth

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(self._DEPTH)
        self._thread = threading.Thread(
            target=self._run, args=(self._queue, self._hash), name="age-sha256", daemon=True
        )
        self._thread.start()
        # An abandoned writer must not leave its thread waiting forever.
        self._stop = weakref.finalize(self, self._queue.put, None)

    @staticmethod
    def _run(q: queue.Queue, digest) -> None:
        while (batch := q.get()) is not None:
            if isinstance(batch, threading.Event):
                batch.set()
                continue
            for piece in batch:
                digest.update(piece)

    def update(self, batch: list) -> None:
        if batch:
            self._queue.put(batch)

    def hexdigest(self) -> str:
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        return self._hash.hexdigest()

    def stop(self) -> None:
        self._stop()  # a finalizer runs at most once: close() and garbage collection agree


class Writable(Protocol):
    """Where ``AgeWriter`` writes: a binary file, or the camera's unbuffered segment file."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class AgeWriter:
    """Encrypt a stream incrementally into ``dst`` (a binary file object).

    Every complete 64 KiB chunk is sealed and written the moment a byte beyond it arrives
    (age's last chunk carries a "final" flag and may itself be full, so a full chunk can only be
    sealed as non-final once we know more follows). ``bytes_to_seal()`` says how many more
    plaintext bytes seal the current chunk; the recorder pads its transport stream with that
    many bytes (rounded up to whole MPEG-TS null packets) and then fdatasyncs.

    It keeps running SHA-256 hashes of the ciphertext written and of the plaintext sealed so
    far: the camera signs exactly those in its journal. Plaintext never reaches ``dst``.
    The hashes are computed on helper threads; ``ciphertext_sha256()`` and
    ``plaintext_sha256()`` wait for them, so they always cover every byte written so far.
    """

    def __init__(self, dst: Writable, recipients: Sequence[str | Recipient | Passphrase]):
        if not recipients:
            raise FormatError("at least one recipient is needed")
        parsed = [Recipient.parse(r) if isinstance(r, str) else r for r in recipients]
        if any(isinstance(r, Passphrase) for r in parsed) and len(parsed) != 1:
            raise FormatError("a passphrase must be the only recipient")
        file_key = os.urandom(FILE_KEY_SIZE)
        nonce = os.urandom(NONCE_SIZE)
        self._aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
        self._dst = dst
        self._buf = bytearray()
        self._counter = 0
        self._closed = False
        self.ciphertext_bytes = 0
        self.plaintext_bytes = 0  # plaintext bytes inside sealed chunks
        self._ct_hash = _Hasher()
        self._pt_hash = _Hasher()
        # Pieces sealed during the current write(), handed to the hashers in one batch.
        self._ct_batch: list = []
        self._pt_batch: list = []
        self._emit(encode_header(file_key, [r.wrap(file_key) for r in parsed]) + nonce)
        self._hand_over()

    def _emit(self, data: bytes) -> None:
        self._dst.write(data)
        self._ct_batch.append(data)
        self.ciphertext_bytes += len(data)

    def _hand_over(self) -> None:
        self._ct_hash.update(self._ct_batch)
        self._pt_hash.update(self._pt_batch)
        self._ct_batch, self._pt_batch = [], []

    def _seal(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        # ``chunk`` must not change afterwards: it waits in _pt_batch for the hasher.
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00")
        self._emit(self._aead.encrypt(nonce, chunk, None))
        self._pt_batch.append(chunk)
        self.plaintext_bytes += len(chunk)
        self._counter += 1
        if self._counter >= 1 << 88:
            raise FormatError("age payload: chunk counter overflow")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError("write to a closed AgeWriter")
        view = memoryview(data).cast("B")
        n = len(view)
        if not isinstance(view.obj, bytes):
            # The caller may reuse a mutable buffer after we return, but the hasher thread may
            # still be reading: take one copy (cheap next to the hashing itself).
            view = memoryview(bytes(view))
        if self._buf:
            take = min(CHUNK_SIZE - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == CHUNK_SIZE and view:
                self._seal(self._buf, final=False)
                self._buf = bytearray()
        # Whole chunks straight from the caller's buffer: no copy on the 10 Mbit/s hot path.
        while len(view) > CHUNK_SIZE:
            self._seal(view[:CHUNK_SIZE], final=False)
            view = view[CHUNK_SIZE:]
        if view:
            self._buf += view
        self._hand_over()
        return n

    def bytes_to_seal(self) -> int:
        """Plaintext bytes that must still be written before the current chunk is sealed."""
        return CHUNK_SIZE - len(self._buf) + 1

    def flush(self) -> None:
        self._dst.flush()

    def ciphertext_sha256(self) -> str:
        """SHA-256 (hex) of every ciphertext byte written so far."""
        return self._ct_digest if self._closed else self._ct_hash.hexdigest()

    def plaintext_sha256(self) -> str:
        """SHA-256 (hex) of the plaintext in the sealed chunks so far."""
        return self._pt_digest if self._closed else self._pt_hash.hexdigest()

    def close(self) -> None:
        """Seal the final chunk. Does not close ``dst``."""
        if self._closed:
            return
        self._seal(bytes(self._buf), final=True)
        self._hand_over()
        self._buf = bytearray()
        self._closed = True
        self._dst.flush()
        # Final digests stay readable after close; the hasher threads end here.
        self._ct_digest, self._pt_digest = self._ct_hash.hexdigest(), self._pt_hash.hexdigest()
        self._ct_hash.stop()
        self._pt_hash.stop()


def encrypt(data: bytes, recipients: Sequence[str | Recipient | Passphrase]) -> bytes:
    out = io.BytesIO()
    writer = AgeWriter(out, recipients)
    writer.write(data)
    writer.close()
    return out.getvalue()


# --- Reader ---------------------------------------------------------------------------------


@dataclass
class Salvage:
    """What ``read_chunks(salvage=True)`` found: ``cut`` is False for a whole file."""

    cut: bool = False
    plaintext_bytes: int = 0
    complete_chunks: int = 0
    ciphertext_offset: int = 0  # where the readable part ends in the file
    reason: str = ""


def read_chunks(
    src: BinaryIO,
    identities: Sequence[Identity | Passphrase],
    *,
    salvage: Salvage | None = None,
) -> Iterator[bytes]:
    """Yield the plaintext of ``src`` chunk by chunk, each authenticated before it is yielded.

    Without ``salvage``, a file that ends before its final chunk raises CutError and any other
    damage raises DecryptError/FormatError. With a ``Salvage`` object, every complete,
    authenticated chunk before the cut is yielded and the object says where and why it ended.
    """
    header = parse_header(src)
    file_key = unwrap_file_key(header, identities)
    nonce = src.read(NONCE_SIZE)
    report = salvage if salvage is not None else Salvage()
    report.ciphertext_offset = len(header.raw)  # a partial nonce is not readable

    def cut(reason: str) -> None:
        report.cut, report.reason = True, reason
        if salvage is None:
            raise CutError(
                f"segment is cut: {reason} after {report.plaintext_bytes} plaintext bytes",
                "hint: the file ends before its final chunk; salvage reads the complete chunks",
                plaintext_bytes=report.plaintext_bytes,
                offset=report.ciphertext_offset,
            )

    if len(nonce) != NONCE_SIZE:
        if salvage is None:
            # As age does: the nonce is read with the header, so a file that stops inside it
            # has a header fault. Salvage (a camera cut) reports it as a cut with nothing readable.
            raise HeaderError("age header: the file ends inside the payload nonce")
        cut("file ends inside the payload nonce")
        return
    report.ciphertext_offset += NONCE_SIZE
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))

    def open_chunk(sealed: bytes, counter: int, final: bool) -> bytes | None:
        try:
            return aead.decrypt(counter.to_bytes(11, "big") + (b"\x01" if final else b"\x00"), sealed, None)
        except InvalidTag:
            return None

    def failed(counter: int, why: str) -> PayloadError:
        return PayloadError(f"age payload: chunk {counter} at byte {report.ciphertext_offset} {why}")

    counter = 0
    sealed = src.read(SEALED_CHUNK_SIZE)
    while True:
        if len(sealed) == SEALED_CHUNK_SIZE:
            # A full chunk: non-final, or the final one of a payload that fills its last chunk.
            following = src.read(SEALED_CHUNK_SIZE)
            plain, final = open_chunk(sealed, counter, False), False
            if plain is None:
                plain, final = open_chunk(sealed, counter, True), True
            if plain is None:
                raise failed(counter, "fails authentication")
        else:
            # A short chunk can only be the final one: it is never tried (nor released) as a
            # non-final chunk, whatever it authenticates as.
            following = b""
            if not sealed:
                cut(f"no final chunk after chunk {counter - 1}" if counter else "no chunk after the payload nonce")
                return
            plain, final = open_chunk(sealed, counter, True), True
            if plain is None:
                cut(f"chunk {counter} is incomplete or damaged ({len(sealed)} bytes)")
                return
            if not plain and counter > 0:
                raise failed(counter, "is an empty final chunk after data (age never writes one)")
        report.plaintext_bytes += len(plain)
        report.complete_chunks += 1
        report.ciphertext_offset += len(sealed)
        yield plain
        if final:
            if following or src.read(1):
                raise PayloadError(f"age payload: data after the final chunk (chunk {counter} ends "
                                   f"at byte {report.ciphertext_offset})")
            return
        sealed = following
        counter += 1


def decrypt(data: bytes, identities: Sequence[Identity | Passphrase]) -> bytes:
    return b"".join(read_chunks(io.BytesIO(data), identities))


# --- Identity files -------------------------------------------------------------------------

IDENTITY_FILE_COMMENT = "# bodycam evidence store identity: keep the passphrase apart from this file"


def encrypt_identity(identity: Identity, passphrase: Passphrase) -> bytes:
    """An identity file in age-keygen's text form, encrypted to a passphrase (age -p compatible).

    ``age -d -i FILE`` and rage recognise such a file, ask for the passphrase and use the key.
    """
    text = (
        f"{IDENTITY_FILE_COMMENT}\n# public key: {identity.recipient}\n{identity}\n"
    ).encode()
    return encrypt(text, [passphrase])


def decrypt_identity(data: bytes, passphrase: Passphrase) -> list[Identity]:
    """Open an identity file made by ``encrypt_identity`` or ``age -p`` over age-keygen output."""
    text = decrypt(data, [passphrase]).decode("utf-8", errors="replace")
    found = [
        Identity.parse(line)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not found:
        raise FormatError("the identity file holds no AGE-SECRET-KEY-1 line")
    return found
