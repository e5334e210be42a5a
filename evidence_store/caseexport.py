"""Case export: every clip held under one case reference (several officers' cameras at one
incident) as one package for the prosecutor, and its offline check.

    README.txt            what this is
    index.json            the case reference and the clips in recording order, each with its folder
                          and the SHA-256 of that folder's signed file list (SHA256SUMS.note)
    clips/NN-<clip-id>/   a complete court export of each clip (export.py), its events logged
    SHA256SUMS(.note)     README.txt and index.json with SHA-256, plain and signed by the store key

``verify-export`` checks the index's signature, that it names exactly the folders present, in
recording order, and every clip folder as a court export.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evidence_store.clip.devkey import DevicePublicKey
from evidence_store.clip.fsutil import atomic_write, fsync_dir
from evidence_store.clip.manifest import parse_manifest
from evidence_store.clip.note import NoteVerifier, open_note, sign_note
from evidence_store.errors import UsageError
from evidence_store.export import HINT_PACKAGE, SUMS, SUMS_NOTE, UNTRUSTED_FAULTS, _file_sha256, _why, export_clip
from evidence_store.verify import Fault

_FOLDER = re.compile(r"clips/[0-9]{2,}-[0-9A-Za-z-]{1,64}")

INDEX = "index.json"
INDEX_FORMAT = "bodycam-case-export/v1"
MAX_INDEX = 4 << 20

README_TEXT = """\
Case export: every clip held under case {case}
==========================================================================
index.json lists the clips in recording order; clips/NN-<clip-id>/ holds each one as a complete
court export with its own README.txt, signed file list, events and proofs. SHA256SUMS.note (a C2SP
signed note, key in any clips/*/store.vkey) signs README.txt and index.json; index.json names the
SHA-256 of each clip folder's SHA256SUMS.note, so the whole package hangs off one signature.
"""


@dataclass
class CaseResult:
    out: Path
    clips: list[str] = field(default_factory=list)


def export_case(store, case: str, clips, out: str | os.PathLike, *, reason: str,
                identities: Sequence) -> CaseResult:
    """Export ``clips`` (ClipInfo, held under ``case``) into ``out`` in recording order."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out} exists and is not empty; export into a new folder")
    ordered = sorted(clips, key=lambda c: (c.recorded_at, c.clip_id))
    out.parent.mkdir(parents=True, exist_ok=True)
    work = out.parent / f".{out.name}.case-{os.getpid()}-{os.urandom(4).hex()}"
    work.mkdir(mode=0o700)
    try:
        entries = []
        for number, info in enumerate(ordered, 1):
            folder = f"clips/{number:02d}-{info.clip_id}"
            export_clip(store, info.clip_id, work / folder, reason=reason, identities=identities)
            entries.append({"clip": info.clip_id, "recorded_at": info.recorded_at, "device": info.device_id,
                            "folder": folder, "sums_note_sha256": _file_sha256(work / folder / SUMS_NOTE)})
        index = {"format": INDEX_FORMAT, "case": case, "clips": entries}
        atomic_write(work / INDEX, (json.dumps(index, indent=1, ensure_ascii=False, sort_keys=True) + "\n").encode())
        atomic_write(work / "README.txt", README_TEXT.format(case=case).encode())
        sums = "".join(f"{_file_sha256(work / n)}  {n}\n" for n in ("README.txt", INDEX))
        atomic_write(work / SUMS, sums.encode())
        atomic_write(work / SUMS_NOTE, sign_note(sums, store.signer))
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return CaseResult(out, [c.clip_id for c in ordered])


def verify_case_export(folder: str | os.PathLike, vkey: str | None, verify_export) -> list[Fault]:
    root = Path(folder)
    faults: list[Fault] = []

    def fault(kind: str, where: str, message: str) -> None:
        faults.append(Fault(kind, where, message, HINT_PACKAGE))

    try:
        index = json.loads((root / INDEX).read_bytes()[:MAX_INDEX])
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT or not isinstance(index.get("clips"), list):
            raise ValueError(f"not a {INDEX_FORMAT} index")
    except UNTRUSTED_FAULTS as exc:
        return [Fault("index-invalid", INDEX, _why(exc), HINT_PACKAGE)]
    entries = [e for e in index["clips"] if isinstance(e, dict)]
    # A forged index must not point the check outside the package (an absolute path, "..").
    for entry in entries:
        folder = str(entry.get("folder"))
        if not _FOLDER.fullmatch(folder):
            fault("index-invalid", INDEX, f"names a folder outside clips/: {folder!r}")
            entry["folder"] = None
    entries = [e for e in entries if e["folder"] is not None]
    # The signature over README and index: with the key given, else the one the clip folders ship.
    key = vkey
    if key is None and entries:
        try:
            key = (root / str(entries[0].get("folder")) / "store.vkey").read_text().strip()
        except OSError:
            key = None
    try:
        verifier = NoteVerifier.from_vkey(key or "")
        sums = (root / SUMS).read_bytes()
        if open_note((root / SUMS_NOTE).read_bytes(), verifier).encode() != sums:
            fault("list-mismatch", SUMS, f"differs from the signed {SUMS_NOTE}")
        listed = {}
        for line in sums.decode("utf-8", "replace").splitlines():
            digest, _, name = line.partition("  ")
            listed[name] = digest
        for name in ("README.txt", INDEX):
            if name not in listed or not (root / name).is_file() or _file_sha256(root / name) != listed[name]:
                fault("file-altered", name, "is missing or does not match the signed list")
    except UNTRUSTED_FAULTS as exc:
        fault("list-signature", SUMS_NOTE, f"does not verify: {_why(exc)}")
    present = sorted(f"clips/{p.name}" for p in (root / "clips").iterdir()) if (root / "clips").is_dir() else []
    named = [str(e.get("folder")) for e in entries]
    for extra in sorted(set(present) - set(named)):
        fault("folder-unlisted", extra, "is not in the index")
    times = [str(e.get("recorded_at")) for e in entries]
    if times != sorted(times):
        fault("index-order", INDEX, "does not list the clips in recording order")
    for entry in entries:
        name = str(entry.get("folder"))
        sub = root / name
        if ".." in Path(name).parts or not sub.is_dir():
            fault("folder-missing", name, "is in the index but missing")
            continue
        if not (sub / SUMS_NOTE).is_file() or _file_sha256(sub / SUMS_NOTE) != entry.get("sums_note_sha256"):
            fault("folder-altered", name, "its signed file list is not the one the index names")
        for f in verify_export(sub, vkey or key):
            faults.append(Fault(f.kind, f"{name}/{f.where}", f.message, f.hint))
        try:
            device = DevicePublicKey.parse((sub / "device.pub").read_text().strip())
            if parse_manifest((sub / "manifest").read_bytes(), device).clip_id != entry.get("clip"):
                fault("index-clip", name, "holds another clip than the index names")
        except UNTRUSTED_FAULTS:
            pass  # verify_export reported it
    return faults
