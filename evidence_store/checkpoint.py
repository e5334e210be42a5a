"""C2SP tlog-checkpoint and tlog-proof: the signed tree heads of the event log and the
offline proofs shipped with a court export.

A checkpoint (c2sp.org/tlog-checkpoint) is a signed note whose text is::

    <origin>\\n<decimal tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

A tlog-proof (c2sp.org/tlog-proof) is::

    c2sp.org/tlog-proof@v1\\n
    [extra <base64 opaque data>\\n]
    index <decimal leaf index>\\n
    <base64 inclusion proof hash>\\n ...   (sibling first, up to the root's child)
    \\n
    <the checkpoint note, verbatim>

A consistency proof (the body of c2sp.org/tlog-witness's add-checkpoint request, which
auditors and witnesses already parse) is::

    old <decimal older tree size>\n
    <base64 consistency proof hash>\n ...   (RFC 9162, older size to the checkpoint's size)
    \n
    <the newer checkpoint note, verbatim>

All are checkable without our code (Go's sumdb/note and sumdb/tlog), which the tests do.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass

from evidence_store import merkle
from evidence_store.clip.errors import FormatError
from evidence_store.clip.note import NoteSigner, NoteVerifier, open_note, sign_note
from evidence_store.errors import IntegrityError

#: First line of every tlog-proof.
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
#: Optional second line of a tlog-proof: unauthenticated application data.
TLOG_PROOF_EXTRA = "extra "
TLOG_PROOF_INDEX = "index "
#: First line of a consistency proof: the older tree size.
CONSISTENCY_OLD = "old "
#: Suggested file extension for tlog-proofs.
TLOG_PROOF_SUFFIX = ".tlog-proof"


@dataclass(frozen=True)
class Checkpoint:
    """A parsed checkpoint: origin, tree size, root hash (32 bytes), extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        """The checkpoint note text (what gets signed)."""
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


@dataclass(frozen=True)
class TLogProof:
    """A parsed tlog-proof: leaf index, inclusion proof hashes, checkpoint note bytes, extra."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None


def _b64decode(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise FormatError(f"{what}: not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise FormatError(f"{what}: base64 is not in canonical form")
    return raw


def _parse_decimal(text: str, what: str) -> int:
    """ASCII decimal with no leading zeroes (unless it is "0"), as both specs require."""
    if not text or not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(f"{what}: {text!r} is not a decimal number without leading zeroes")
    return int(text)


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """Checkpoint text: origin, size, base64 root and extension lines, each ending in a newline.

    Raises FormatError for an empty or multi-line origin, a negative size, a root that is not
    32 bytes, or an empty or multi-line extension.
    """
    if not origin or "\n" in origin:
        raise FormatError(f"checkpoint origin {origin!r} must be one non-empty line")
    if not isinstance(size, int) or size < 0:
        raise FormatError(f"checkpoint size {size!r} must be a non-negative integer")
    if len(root) != merkle.HASH_SIZE:
        raise FormatError(f"checkpoint root is {len(root)} bytes, expected {merkle.HASH_SIZE}")
    for ext in extensions:
        if not ext or "\n" in ext:
            raise FormatError(f"checkpoint extension {ext!r} must be one non-empty line")
    lines = [origin, str(size), base64.b64encode(root).decode("ascii"), *extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (not the signed note; see open_checkpoint).

    Raises FormatError naming the line at fault.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("checkpoint: not valid UTF-8") from None
    if not text.endswith("\n"):
        raise FormatError("checkpoint: text must end in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise FormatError(f"checkpoint: {len(lines)} lines, expected origin, size and root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise FormatError("checkpoint line 1: origin is empty")
    size = _parse_decimal(size_text, "checkpoint line 2 (tree size)")
    root = _b64decode(root_text, "checkpoint line 3 (root hash)")
    if len(root) != merkle.HASH_SIZE:
        raise FormatError(f"checkpoint line 3 (root hash): {len(root)} bytes, expected {merkle.HASH_SIZE}")
    for number, ext in enumerate(extensions, 4):
        if not ext:
            raise FormatError(f"checkpoint line {number}: extension lines must be non-empty")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(
    origin: str, size: int, root: bytes, signer: NoteSigner, extensions: Sequence[str] = ()
) -> bytes:
    """Signed checkpoint note bytes. The spec wants the key name to match the origin; we
    do not force it, so a store may rename its log without a new key, but init uses the same
    name for both. Raises FormatError as format_checkpoint does."""
    return sign_note(format_checkpoint(origin, size, root, extensions), signer)


def open_checkpoint(note: bytes, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint note and parse it.

    ``origin``, if given, must equal the checkpoint's origin (a checkpoint of another log
    signed with the same key must not pass). Raises FormatError if malformed, SignatureError
    if ``verifier`` did not sign it, IntegrityError for an unexpected origin.
    """
    checkpoint = parse_checkpoint(open_note(note, verifier))
    if origin is not None and checkpoint.origin != origin:
        raise IntegrityError(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}",
            where=f"checkpoint {checkpoint.origin} size {checkpoint.size}",
        )
    return checkpoint


def verify_checkpoint_consistency(old: Checkpoint, new: Checkpoint, proof: Sequence[bytes]) -> None:
    """Check that checkpoint ``new`` extends ``old`` (same origin, RFC 9162 consistency proof).

    Raises IntegrityError (merkle.ProofError) if not.
    """
    if old.origin != new.origin:
        raise IntegrityError(
            f"checkpoints of different logs: {old.origin!r} and {new.origin!r}", where=new.origin
        )
    merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)


def format_tlog_proof(
    index: int, proof_hashes: Sequence[bytes], checkpoint_note: bytes, extra: bytes | None = None
) -> str:
    """A tlog-proof for leaf ``index`` with its inclusion proof and the signed checkpoint note.

    The spec has no leaf-hash line: the verifier hashes the leaf bytes shipped beside the
    proof. ``extra`` is optional unauthenticated data. Raises FormatError for a negative
    index, a hash that is not 32 bytes, or a checkpoint note that is not UTF-8 text.
    """
    if not isinstance(index, int) or index < 0:
        raise FormatError(f"tlog-proof index {index!r} must be a non-negative integer")
    lines = [TLOG_PROOF_HEADER]
    if extra is not None:
        if not extra:
            raise FormatError("tlog-proof extra data must be non-empty when given")
        lines.append(TLOG_PROOF_EXTRA + base64.b64encode(extra).decode("ascii"))
    lines.append(f"{TLOG_PROOF_INDEX}{index}")
    for i, h in enumerate(proof_hashes):
        if len(h) != merkle.HASH_SIZE:
            raise FormatError(f"tlog-proof hash {i} is {len(h)} bytes, expected {merkle.HASH_SIZE}")
        lines.append(base64.b64encode(h).decode("ascii"))
    try:
        note = bytes(checkpoint_note).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("tlog-proof checkpoint: not valid UTF-8") from None
    return "\n".join(lines) + "\n\n" + note


def parse_tlog_proof(text: str | bytes) -> TLogProof:
    """Parse a tlog-proof, checking its syntax only (see verify_tlog_proof).

    Raises FormatError naming the line at fault.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("tlog-proof: not valid UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise FormatError("tlog-proof: no blank line before the checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise FormatError(f"tlog-proof line 1: expected {TLOG_PROOF_HEADER!r}, got {lines[0][:60]!r}")
    at = 1
    extra = None
    if at < len(lines) and lines[at].startswith(TLOG_PROOF_EXTRA):
        extra = _b64decode(lines[at][len(TLOG_PROOF_EXTRA) :], f"tlog-proof line {at + 1} (extra)")
        at += 1
    if at >= len(lines) or not lines[at].startswith(TLOG_PROOF_INDEX):
        raise FormatError(f"tlog-proof line {at + 1}: expected 'index <n>'")
    index = _parse_decimal(lines[at][len(TLOG_PROOF_INDEX) :], f"tlog-proof line {at + 1} (index)")
    hashes = []
    for number, line in enumerate(lines[at + 1 :], at + 2):
        h = _b64decode(line, f"tlog-proof line {number} (proof hash)")
        if len(h) != merkle.HASH_SIZE:
            raise FormatError(f"tlog-proof line {number} (proof hash): {len(h)} bytes, expected {merkle.HASH_SIZE}")
        hashes.append(h)
    if not note:
        raise FormatError("tlog-proof: the checkpoint after the blank line is missing")
    return TLogProof(index, tuple(hashes), note.encode("utf-8"), extra)


def format_consistency_proof(old_size: int, proof_hashes: Sequence[bytes], checkpoint_note: bytes) -> str:
    """The consistency proof from tree size ``old_size`` to the signed checkpoint, in the
    c2sp.org/tlog-witness add-checkpoint form (see the module docstring)."""
    if not isinstance(old_size, int) or old_size < 0:
        raise FormatError(f"consistency proof old size {old_size!r} must be a non-negative integer")
    lines = [f"{CONSISTENCY_OLD}{old_size}"]
    for i, h in enumerate(proof_hashes):
        if len(h) != merkle.HASH_SIZE:
            raise FormatError(f"consistency proof hash {i} is {len(h)} bytes, expected {merkle.HASH_SIZE}")
        lines.append(base64.b64encode(h).decode("ascii"))
    try:
        note = checkpoint_note.decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError("consistency proof checkpoint: not valid UTF-8") from None
    return "\n".join(lines) + "\n\n" + note


def parse_consistency_proof(text: str | bytes) -> tuple[int, tuple[bytes, ...], bytes]:
    """(old size, proof hashes, checkpoint note bytes) of a consistency proof; syntax only.
    Raises FormatError naming the line at fault."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("consistency proof: not valid UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep or not note:
        raise FormatError("consistency proof: no checkpoint after a blank line")
    lines = head.split("\n")
    if not lines[0].startswith(CONSISTENCY_OLD):
        raise FormatError("consistency proof line 1: expected 'old <n>'")
    old_size = _parse_decimal(lines[0][len(CONSISTENCY_OLD):], "consistency proof line 1 (old size)")
    hashes = []
    for number, line in enumerate(lines[1:], 2):
        h = _b64decode(line, f"consistency proof line {number}")
        if len(h) != merkle.HASH_SIZE:
            raise FormatError(f"consistency proof line {number}: {len(h)} bytes, expected {merkle.HASH_SIZE}")
        hashes.append(h)
    return old_size, tuple(hashes), note.encode("utf-8")


def verify_tlog_proof(
    proof_text: str | bytes, leaf: bytes, verifier: NoteVerifier, origin: str | None = None
) -> Checkpoint:
    """Check that ``leaf`` (the exact leaf bytes) is in the log, per a tlog-proof.

    Returns the checkpoint the proof is against. Raises FormatError if the proof is
    malformed, SignatureError if the checkpoint is not signed by ``verifier``, IntegrityError
    for another origin, merkle.ProofError if the leaf is not included at the stated index.
    """
    # 1. Syntax.
    proof = parse_tlog_proof(proof_text)
    # 2. The checkpoint must be signed by the log's key (and name the expected log).
    checkpoint = open_checkpoint(proof.checkpoint, verifier, origin)
    # 3. The leaf hash must lead to the signed root along the inclusion proof.
    if proof.index >= checkpoint.size:
        raise merkle.ProofError(
            f"tlog-proof index {proof.index} is beyond the checkpoint's tree size {checkpoint.size}",
            where=f"leaf {proof.index} of {checkpoint.size}",
        )
    merkle.verify_inclusion(proof.index, checkpoint.size, merkle.leaf_hash(leaf), proof.hashes, checkpoint.root)
    return checkpoint
