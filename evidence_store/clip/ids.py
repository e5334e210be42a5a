"""Clip ids (UUIDv7, RFC 9562) and the one timestamp format every record uses."""

from __future__ import annotations

import os
import re
import uuid
from datetime import UTC, datetime

from evidence_store.clip.errors import FormatError

CLIP_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SEGMENT_RE = re.compile(r"^seg-[0-9]{5}\.age\Z")


def new_clip_id(now: datetime) -> str:
    """A UUIDv7: 48-bit Unix milliseconds, then 74 random bits, so ids sort by time and never
    collide across cameras or runs (the camera's clock may be wrong; the randomness is not)."""
    ms = int(now.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def check_clip_id(text: str) -> str:
    """Return ``text`` if it is a UUIDv7 in lower-case form; FormatError otherwise.

    Clip ids become folder names on the camera and in exports, so this also stops names that
    could escape a folder ("..", "/").
    """
    if not isinstance(text, str) or not CLIP_ID_RE.match(text):
        raise FormatError(f"not a clip id: {str(text)[:40]!r}")
    return text


def check_device_id(text: str) -> str:
    if not isinstance(text, str) or not DEVICE_ID_RE.match(text):
        raise FormatError(f"not a device id (letters, digits, . _ -; at most 64): {str(text)[:40]!r}")
    return text


def format_time(moment: datetime) -> str:
    """UTC, millisecond precision, 'Z': 2026-11-25T10:00:00.123Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: the camera and store only use aware UTC times")
    m = moment.astimezone(UTC)
    # Four-digit year always (strftime writes year 1 as "1", which parse_time rightly refuses,
    # and a camera whose clock said year 1 could then never seal its clip); one f-string, not
    # strftime: an expiry run formats 150,000 times.
    return (f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}."
            f"{m.microsecond // 1000:03d}Z")


# The one form FORMAT.md § 1.1 allows. Anything looser (a date alone, an offset, no fraction) once
# became a naive datetime that crashed the dock's comparisons and held back every later clip.
TIME_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")


def parse_time(text: str, what: str = "time") -> datetime:
    """Parse a timestamp of exactly the form format_time writes into an aware UTC datetime.
    Raises FormatError naming ``what`` for anything else (untrusted records use only this)."""
    try:
        if not isinstance(text, str) or not TIME_RE.match(text):
            raise ValueError
        return datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise FormatError(f"{what}: not a UTC timestamp of the form YYYY-MM-DDTHH:MM:SS.mmmZ: {str(text)[:40]!r}") from None
