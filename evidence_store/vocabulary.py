"""The store's words, defined once: clip states, hold kinds, justification states.

A legal change (a new hold kind, a new state) is made here and nowhere else; the CLI, the dock,
verify and report take their choices from these enums. Each member *is* its string (``StrEnum``),
so the values stored in the index, printed by ``list --json`` and written into log leaves stay
exactly the words ARCHITECTURE.md names, and comparing a member with a string read back from the
database works.

Event kinds live in ``evidence_store.events`` (their one definition, beside the leaf format they
are part of). Pure stdlib: nothing here pulls in a database or a codec.
"""

from __future__ import annotations

from enum import StrEnum


class ClipState(StrEnum):
    """Where a clip (or quarantined material) stands, as ``list --json`` names it."""

    #: Ingested, within its retention or past it with nothing yet due.
    STORED = "stored"
    #: Stored and under at least one active hold: kept past its deadline until the last release.
    HELD = "held"
    #: Deleted by expiry: the index row and the log keep the proof, the objects are gone.
    EXPIRED = "expired"
    #: Failed a check at ingest (forged, revoked camera, broken chain): kept apart, never viewable
    #: as evidence, deleted by the same retention.
    QUARANTINED = "quarantined"


#: The states in which a row still names objects that must be kept (expiry, verify).
LIVE_STATES = (ClipState.STORED, ClipState.QUARANTINED)


class HoldKind(StrEnum):
    """Why a clip is kept past its deadline (each a legal ground of its own)."""

    #: Needed as evidence in a case (criminal or administrative proceedings).
    EVIDENCE = "evidence"
    #: Needed to avert a danger (police law's "Gefahrenabwehr").
    HAZARD = "hazard"
    #: A data subject asked for access or erasure: kept until the request is answered.
    SUBJECT_REQUEST = "subject-request"


class Justification(StrEnum):
    """Whether an emergency (unannounced) clip has been justified after the fact."""

    PENDING = "pending"
    JUSTIFIED = "justified"


def choices(enum: type[StrEnum]) -> tuple[str, ...]:
    """The plain strings of an enum, in definition order: for argparse ``choices=`` and help."""
    return tuple(member.value for member in enum)
