"""Events of the log and their canonical leaf bytes.

A leaf is canonical JSON (evidence_store.clip.canonical: sorted keys, no spaces, integers only)::

    {"format":"bodycam-event/v1","index":17,"kind":"view","time":"2026-11-25T10:00:00.000Z",
     "clip":"0193...","device":"cam-07","prev":"<64 hex>|null",
     "actor":"<64 hex>","reason":"<64 hex>", ...kind-specific fields}

* ``index`` is the leaf's own position in the log: a leaf cannot be moved without breaking it.
* ``prev`` is the RFC 9162 leaf hash (hex) of the previous event about the same subject (the clip;
  for device events the device; for quarantined material its quarantine id), null for the first.
  So "every event about this clip" is a chain that a court can walk from the leaf bytes alone.
* Personal fields (PERSONAL_FIELDS: actor, officer, reason, case) enter the leaf only as
  ``SHA-256(salt || UTF-8 text)`` in hex, with a fresh 16-byte salt per text. Salt and text live in
  the ``texts`` table. Erasing both when their retention ends (access logs: two years, DSGVO
  Art. 5(1)(e)) leaves the leaf, and so the whole log, verifiable; the salt keeps a short text such
  as a user name from being found again by hashing guesses.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evidence_store import merkle
from evidence_store.clip import canonical
from evidence_store.clip.errors import FormatError

EVENT_FORMAT = "bodycam-event/v1"
SALT_SIZE = 16

ENROLL = "enroll"
ASSIGN = "assign"
REVOKE = "revoke"
INGEST = "ingest"
GAP = "gap"
QUARANTINE = "quarantine"
VIEW = "view"
EXPORT = "export"
HOLD = "hold"
RELEASE = "release"
JUSTIFY = "justify"
EXPIRE = "expire"
#: A redacted copy for release (evidence_store/release.py); early deletion in two steps by two
#: people (evidence_store/deletion.py).
REDACT = "redact"
DELETE_REQUEST = "delete-request"
DELETE_APPROVE = "delete-approve"
#: The SHA-256 of each file that decides where video is encrypted to or what is trusted
#: (recipients, log.vkey, store.json): logged at init and whenever the administrator changes one.
CONFIG = "config"
#: A docking that stored or quarantined everything the camera held: the camera's later clips were
#: recorded after it, whatever their clocks claim, so it bounds their deadlines
#: (retention.earliest_start). In the log, so that an edited index row cannot move that bound.
DOCKING = "docking"
KINDS = (ENROLL, ASSIGN, REVOKE, INGEST, GAP, QUARANTINE, VIEW, EXPORT, HOLD, RELEASE, JUSTIFY, EXPIRE,
         REDACT, DELETE_REQUEST, DELETE_APPROVE, CONFIG, DOCKING)
#: Accesses: the log of who saw plaintext. Their personal texts are kept two years.
ACCESS_KINDS = (VIEW, EXPORT, REDACT)
#: Kinds whose officer-given reason is required (the law: every access with a reason). Machine-made
#: reasons (quarantine, expire, gap: fixed words naming no person) go into the non-personal ``cause``.
REASON_REQUIRED = (REVOKE, VIEW, EXPORT, HOLD, RELEASE, JUSTIFY, REDACT, DELETE_REQUEST, DELETE_APPROVE)

PERSONAL_FIELDS = ("actor", "officer", "reason", "case")
BASE_FIELDS = ("format", "index", "kind", "time", "clip", "device", "prev")


@dataclass
class Event:
    """An event before it is appended. ``personal`` maps PERSONAL_FIELDS to their texts; ``data``
    holds the non-personal, kind-specific fields (object hashes, flags, ...)."""

    kind: str
    time: str
    subject: str
    clip: str | None = None
    device: str | None = None
    personal: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FormatError(f"unknown event kind {self.kind!r}")
        for name in self.personal:
            if name not in PERSONAL_FIELDS:
                raise FormatError(f"{name!r} is not a personal field")
        for name in self.data:
            if name in BASE_FIELDS or name in PERSONAL_FIELDS:
                raise FormatError(f"event data may not redefine {name!r}")


def new_salt() -> bytes:
    return os.urandom(SALT_SIZE)


def salted_digest(salt: bytes, text: str) -> str:
    """SHA-256(salt || UTF-8 text), hex: the form a personal text takes inside a leaf."""
    return hashlib.sha256(salt + text.encode("utf-8")).hexdigest()


def leaf_bytes(event: Event, index: int, prev: str | None, digests: dict[str, str]) -> bytes:
    """The canonical leaf bytes of ``event`` at log ``index``; ``digests`` are the salted digests
    of its personal fields (same keys as ``event.personal``)."""
    body: dict[str, Any] = {
        "format": EVENT_FORMAT,
        "index": index,
        "kind": event.kind,
        "time": event.time,
        "clip": event.clip,
        "device": event.device,
        "prev": prev,
    }
    body.update(digests)
    body.update(event.data)
    return canonical.dumps(body)


def parse_leaf(data: bytes, what: str = "event") -> dict[str, Any]:
    """Parse leaf bytes (canonical JSON of the event format). Raises FormatError."""
    body = canonical.loads(data, what)
    if not isinstance(body, dict) or body.get("format") != EVENT_FORMAT:
        raise FormatError(f"{what}: not a {EVENT_FORMAT} leaf")
    if body.get("kind") not in KINDS or not isinstance(body.get("index"), int):
        raise FormatError(f"{what}: unknown kind or missing index")
    return body


def _fast_loads() -> Callable[[bytes], Any]:
    try:  # twice as fast as the standard library over a million leaves; same results on them
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - platforms without an orjson wheel
        import json

        return json.loads


#: Leaf bytes -> the parsed JSON value, unchecked: for reading the whole log (verify, expiry),
#: where each field is then compared with what it must be. parse_leaf is the checking parser.
load_leaf = _fast_loads()


def leaf_hash_hex(data: bytes) -> str:
    """RFC 9162 leaf hash of leaf bytes, hex: what the next event's ``prev`` names."""
    return merkle.leaf_hash(data).hex()
