"""Canonical JSON: the one byte encoding that manifests, journal entries and records are signed in.

Rules (docs/FORMAT.md): UTF-8, keys sorted by code point, no insignificant white space,
integers only (no floats, so every implementation prints numbers identically), ``ensure_ascii``
off. A parser re-encodes what it read and refuses anything that was not already canonical, so
one logical record has exactly one byte form and one hash.
"""

from __future__ import annotations

import json
from itertools import repeat
from typing import Any

from evidence_store.clip import safejson
from evidence_store.clip.errors import FormatError


def _valid(value: Any) -> bool:
    """Whether ``value`` holds only what canonical JSON encodes: the fast pass, which builds no
    paths and recurses only into containers (an expiry run encodes fifty thousand events)."""
    if isinstance(value, dict):
        if not all(map(isinstance, value, repeat(str))):
            return False
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return isinstance(value, (str, int)) or value is None  # bool is an int
    for item in items:  # noqa: SIM110 - a loop: all() over a generator is a third slower here
        if not (isinstance(item, (str, int)) or item is None or _valid(item)):
            return False
    return True


def _check(value: Any, where: str) -> None:
    """Raise FormatError naming the first part of ``value`` that canonical JSON cannot encode."""
    if _valid(value):
        return
    if isinstance(value, float):
        raise FormatError(f"{where}: floats are not allowed in canonical JSON")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FormatError(f"{where}: object keys must be strings")
            _check(item, f"{where}.{key}")
        return
    raise FormatError(f"{where}: {type(value).__name__} cannot be encoded")


def dumps(value: Any) -> bytes:
    """Encode ``value`` canonically. Raises FormatError for floats or foreign types."""
    _check(value, "$")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes, what: str) -> Any:
    """Decode canonical JSON; ``what`` names the file in the error. Refuses non-canonical bytes."""
    value = safejson.loads(data, what)  # bounded: the bytes come from a camera or a partition
    try:
        encoded = dumps(value)
    except FormatError as exc:  # a float: name the file, not just the JSON path
        raise FormatError(f"{what}: {exc}") from None
    if encoded != data:
        raise FormatError(f"{what}: not in canonical form")
    return value
