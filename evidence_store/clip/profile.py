"""The legal profile the store assigns a camera in its enrollment record.

One definition for both sides: the store writes it, the camera reads it from the signed
enrollment and may only narrow it (device.config.effective_profile). What a federal state's law
allows lives here; docs/ARCHITECTURE.md says where each legal rule is enforced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from evidence_store.clip.errors import FormatError


@dataclass(frozen=True)
class Profile:
    """``prerecord_max_seconds`` 0 means no pre-recording buffer may exist at all (NRW: § 15c PolG
    NRW has none); the recorder creates a RAM buffer only if the effective value is above 0.
    ``retention_days``: recording start to deletion unless held (NRW: two weeks). ``sound`` False
    forbids recording sound at all (NRW allows it: § 15c PolG NRW speaks of "Bild- und
    Tonaufzeichnungen")."""

    name: str = "NRW"
    prerecord_max_seconds: int = 0
    retention_days: int = 14
    announcement_required: bool = True
    sound: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str = "profile") -> Profile:
        """Parse a profile from a record (the enrollment's ``profile`` field). Missing keys take
        the NRW values; an unknown key or a bad value raises FormatError naming the key."""
        if not isinstance(data, Mapping):
            raise FormatError(f"{where} must be an object")
        types = {"name": str, "prerecord_max_seconds": int, "retention_days": int, "announcement_required": bool,
                 "sound": bool}
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise FormatError(f"unknown key {where}.{unknown[0]}", f"known keys: {', '.join(known)}")
        for key, value in data.items():
            # bool is an int subclass: true must not pass for a number of days.
            if not isinstance(value, types[key]) or (types[key] is int and isinstance(value, bool)):
                raise FormatError(f"{where}.{key} must be {types[key].__name__}, got {value!r}")
        profile = cls(**data)
        if not profile.name:
            raise FormatError(f"{where}.name must not be empty")
        if profile.prerecord_max_seconds < 0:
            raise FormatError(f"{where}.prerecord_max_seconds must be zero or more, got {profile.prerecord_max_seconds}")
        if profile.retention_days <= 0:
            raise FormatError(f"{where}.retention_days must be more than zero, got {profile.retention_days}")
        return profile


NRW = Profile()
