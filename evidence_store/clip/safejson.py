"""The one JSON parser for untrusted bytes: everything read from a camera's partition or the outbox.

Why not plain ``json.loads``: on hostile input it fails in ways no caller expects. A number of
5,000 digits raises ValueError (CPython's int-conversion limit), a few thousand brackets raise
RecursionError, ``NaN`` and ``Infinity`` pass as floats, and a duplicate key silently keeps the
last value, so two readers of one signed record could see different fields. Each of these blocked
a whole camera at the dock. Here every one is a FormatError naming the file, and the limits below
(docs/FORMAT.md, "Untrusted JSON") are far above anything our formats need.
"""

from __future__ import annotations

import json
import re
from typing import Any

from evidence_store.clip.errors import FormatError

MAX_BYTES = 64 * 1024 * 1024  # the largest file any caller reads (a journal); callers cap lower
MAX_DEPTH = 16  # our records nest at most 4 deep
MAX_INT_DIGITS = 19  # every integer we use fits a signed 64-bit value
MAX_INT = 2**63 - 1

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


class _Refused(Exception):
    pass


def _depth(data: bytes) -> int:
    """Deepest nesting of ``data`` (strings removed first, so brackets inside them do not count)."""
    deepest = depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b"", data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _Refused(f"a number of {len(text)} digits")
    value = int(text)
    if abs(value) > MAX_INT:
        raise _Refused("a number beyond 64 bits")
    return value


def _parse_float(text: str) -> Any:
    raise _Refused(f"a fraction or exponent ({text[:20]})")


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} (not JSON)")


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key[:40]!r} twice")
        out[key] = value
    return out


_DECODER = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant,
                            object_pairs_hook=_pairs, strict=True)


def loads(data: bytes, what: str, *, max_bytes: int = MAX_BYTES) -> Any:
    """Parse untrusted JSON ``data``; ``what`` names the file in every error.

    Accepts only UTF-8, at most ``max_bytes``, nesting at most MAX_DEPTH, integers of at most
    MAX_INT_DIGITS digits within 64 bits, no fractions or exponents, no NaN/Infinity, no
    repeated keys. Raises FormatError (never anything else) otherwise.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise FormatError(f"{what}: not bytes")
    if len(data) > max_bytes:
        raise FormatError(f"{what}: {len(data)} bytes, more than the {max_bytes} allowed")
    depth = _depth(bytes(data))
    if depth > MAX_DEPTH:
        raise FormatError(f"{what}: nested {depth} deep, more than the {MAX_DEPTH} allowed")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what}: not valid JSON (not UTF-8)") from None
    try:
        value, end = _DECODER.raw_decode(text, _skip_ws(text, 0))
    except _Refused as exc:
        raise FormatError(f"{what}: refused {exc}") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{what}: not valid JSON ({exc.msg} at {exc.pos})") from None
    except (ValueError, RecursionError) as exc:  # defence in depth: the checks above should prevent these
        raise FormatError(f"{what}: not valid JSON ({type(exc).__name__})") from None
    if _skip_ws(text, end) != len(text):
        raise FormatError(f"{what}: data after the JSON value")
    try:
        # A lone surrogate escape (\\ud800) is valid JSON but no UTF-8 text: every later
        # encoding of the value (canonical form, the log, SQLite) would fail on it.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(f"{what}: a string that is not valid Unicode") from None
    return value


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
