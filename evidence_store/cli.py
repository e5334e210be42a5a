"""``bodycam-evidence``: the evidence officers' command line.

    bodycam-evidence --store DIR init [--passphrase-file F] [--database postgresql://USER@HOST/DB]
                                      [--objects s3://BUCKET/PREFIX]
    bodycam-evidence --store DIR recipient
    bodycam-evidence --store DIR list [--held] [--expiring] [--officer ID] [--device ID]
                                      [--since DATE] [--until DATE] [--all] [--json]
    bodycam-evidence --store DIR show CLIP [--json]
    bodycam-evidence --store DIR verify [CLIP ...] [--quick] [--json]
    bodycam-evidence --store DIR hold CLIP --case REF --reason TEXT [--kind evidence|hazard|subject-request]
    bodycam-evidence --store DIR release CLIP --case REF --reason TEXT
    bodycam-evidence --store DIR justify CLIP --reason TEXT
    bodycam-evidence --store DIR view CLIP --reason TEXT [--player CMD] [--contact-sheet PNG]
    bodycam-evidence --store DIR export CLIP --out DIR --reason TEXT
    bodycam-evidence --store DIR export --case REF --out DIR --reason TEXT
    bodycam-evidence --store DIR redact CLIP --reason TEXT --out DIR [--edits FILE] [--record FILE] [--json]
    bodycam-evidence --store DIR delete CLIP --reason TEXT [--json]
    bodycam-evidence --store DIR approve REQUEST --reason TEXT
    bodycam-evidence verify-export DIR
    bodycam-evidence --store DIR expire [--dry-run [--now ISO]]
    bodycam-evidence --store DIR log [--clip CLIP] [--json]
    bodycam-evidence --store DIR checkpoint
    bodycam-evidence --store DIR consistency OLD [NEW]
    bodycam-evidence --store DIR record-config
    bodycam-evidence --store DIR report [--month YYYY-MM]
    bodycam-evidence --store DIR migrate --database URL --objects s3://BUCKET/PREFIX

Environment: ``BODYCAM_STORE`` for --store; ``BODYCAM_PASSPHRASE_FILE`` for --passphrase-file
(init, view, export; else a terminal prompt, else failure: a passphrase is never an argument);
``BODYCAM_IDENTITY`` for --identity (the identity file, if not in the store folder);
``BODYCAM_SCRYPT_LOG_N`` sets init's scrypt work factor (default 18, age's; tests use 10).

Exit codes:

    ====  ==============================================================================
    0     success (verify, verify-export: no fault found)
    1     error: the command could not be done (EvidenceError), e.g. not a store
    2     usage: a bad command line (unknown clip, missing --reason, --now without --dry-run)
    3     integrity: verify/verify-export found faults, or a hash or signature does not match
    4     decryption: wrong passphrase or an identity that does not match
    130   interrupted (Ctrl-C)
    ====  ==============================================================================
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from evidence_store.clip import cmdline
from evidence_store.clip.cmdline import Parser as _Parser
from evidence_store.clip.ids import parse_time
from evidence_store.errors import EvidenceError, UsageError
from evidence_store.vocabulary import LIVE_STATES, HoldKind, choices

log = logging.getLogger(__name__)

PROG = "bodycam-evidence"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTEGRITY, EXIT_DECRYPT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
#: ``list --expiring``: unheld clips whose deadline falls within this time.
EXPIRING_WITHIN = timedelta(days=2)
SCRYPT_ENV = "BODYCAM_SCRYPT_LOG_N"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Evidence store for body-worn camera recordings.")
    p.add_argument("--store", metavar="DIR", help="the store folder (default: $BODYCAM_STORE)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details and show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    c = cmd("init", "create store, identity and log key; print recipient and verifier key")
    c.add_argument("--passphrase-file", metavar="F")
    c.add_argument("--database", metavar="URL",
                   help="keep index and log in this PostgreSQL database (postgresql://USER@HOST/DB, "
                        "no password: libpq's ~/.pgpass, PGPASSFILE, PGSERVICEFILE); default: SQLite in DIR")
    c.add_argument("--objects", metavar="URL",
                   help="keep the objects in this S3 bucket with versioning and Object Lock (s3://BUCKET/PREFIX; "
                        "endpoint and credentials by boto3's conventions: AWS_ENDPOINT_URL, AWS_PROFILE, "
                        "~/.aws/config and ~/.aws/credentials); default: DIR/objects")
    cmd("recipient", "print the age recipient(s)")
    c = cmd("list", "list clips")
    c.add_argument("--held", action="store_true", help="only clips with a hold")
    c.add_argument("--expiring", action="store_true", help="only unheld clips due within two days")
    c.add_argument("--officer", metavar="ID")
    c.add_argument("--device", metavar="ID")
    c.add_argument("--since", metavar="DATE", help="recorded at or after (YYYY-MM-DD or ISO time)")
    c.add_argument("--until", metavar="DATE", help="recorded before (YYYY-MM-DD or ISO time)")
    c.add_argument("--all", action="store_true", help="include expired clips")
    c.add_argument("--json", action="store_true")
    c = cmd("show", "show one clip: segments, holds, events")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--json", action="store_true")
    c = cmd("verify", "check objects, log, checkpoints and clips; list every fault")
    c.add_argument("clips", metavar="CLIP", nargs="*")
    c.add_argument("--quick", action="store_true",
                   help="do not re-read the objects: trust the SHA-256 and size the storage recorded")
    c.add_argument("--json", action="store_true")
    c = cmd("hold", "keep a clip beyond its deadline (after review)")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--case", metavar="REF")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--kind", choices=choices(HoldKind), default=HoldKind.EVIDENCE.value)
    c = cmd("release", "release a hold")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--case", metavar="REF")
    c.add_argument("--reason", metavar="TEXT")
    c = cmd("justify", "record why an emergency clip was not announced")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--reason", metavar="TEXT")
    c = cmd("view", "review a clip: play through a pipe, or write a contact sheet")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--player", metavar="CMD", help="player reading MPEG-TS on stdin (default ffplay, mpv)")
    c.add_argument("--contact-sheet", metavar="PNG")
    c.add_argument("--passphrase-file", metavar="F")
    c.add_argument("--identity", metavar="FILE")
    c = cmd("export", "write the court package of a clip (or of every clip held under --case)")
    c.add_argument("clip", metavar="CLIP", nargs="?")
    c.add_argument("--case", metavar="REF", help="every clip held under this case reference, one package")
    c.add_argument("--out", metavar="DIR")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--passphrase-file", metavar="F")
    c.add_argument("--identity", metavar="FILE")
    add_release_commands(cmd)
    c = cmd("verify-export", "check an export package offline (no store needed)")
    c.add_argument("folder", metavar="DIR")
    c.add_argument("--vkey", metavar="KEY", help="the store's published verifier key")
    c.add_argument("--json", action="store_true")
    c = cmd("expire", "delete what is due (system clock); --dry-run previews")
    c.add_argument("--dry-run", action="store_true")
    c.add_argument("--now", metavar="ISO", help="preview as of this time (only with --dry-run)")
    c = cmd("log", "print the event log")
    c.add_argument("--clip", metavar="CLIP")
    c.add_argument("--json", action="store_true")
    cmd("checkpoint", "print the latest signed checkpoint")
    c = cmd("consistency", "prove that the log of size NEW extends the one of size OLD (for auditors)")
    c.add_argument("old", metavar="OLD", type=_tree_size, help="the older tree size (an earlier checkpoint's)")
    c.add_argument("new", metavar="NEW", type=_tree_size, nargs="?",
                   help="a newer checkpointed size (default: the latest checkpoint)")
    cmd("record-config", "the administrator: log the hashes of recipients, log.vkey and store.json")
    add_migrate_command(cmd)
    c = cmd("report", "monthly figures for oversight")
    c.add_argument("--month", metavar="YYYY-MM")
    c.add_argument("--json", action="store_true")
    return p


# -- inputs ----------------------------------------------------------------------------------


def _tree_size(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError(f"not a tree size: {text!r}")
    return int(text)


def store_dir(args) -> Path:
    value = args.store or os.environ.get("BODYCAM_STORE")
    if not value:
        raise UsageError("no store given", "hint: use --store DIR or set BODYCAM_STORE")
    return Path(value)


def read_passphrase(args, *, confirm: bool = False) -> bytes:
    """--passphrase-file, else $BODYCAM_PASSPHRASE_FILE, else a terminal prompt; else UsageError.
    One trailing newline of the file is ignored."""
    path = getattr(args, "passphrase_file", None) or os.environ.get("BODYCAM_PASSPHRASE_FILE")
    if path:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read the passphrase file {path}: {exc.strerror}") from None
        data = data[:-1] if data.endswith(b"\n") else data
        data = data[:-1] if data.endswith(b"\r") else data
    elif sys.stdin.isatty():
        data = getpass.getpass("Passphrase: ").encode()
        if confirm and getpass.getpass("Passphrase again: ").encode() != data:
            raise UsageError("the passphrases differ")
    else:
        raise UsageError("no passphrase", "hint: use --passphrase-file F or BODYCAM_PASSPHRASE_FILE "
                                          "(there is no terminal to ask on)")
    if not data:
        raise UsageError("the passphrase is empty")
    return data


def identity_file(args) -> str | None:
    return getattr(args, "identity", None) or os.environ.get("BODYCAM_IDENTITY")


def parse_when(text: str, what: str, *, end_of_day: bool = False) -> datetime:
    """YYYY-MM-DD (UTC midnight; with ``end_of_day`` the next midnight) or an ISO time with zone."""
    return cmdline.parse_date_arg(text, what, end_of_day=end_of_day)


def open_store(args):
    from evidence_store.plaintext import sweep
    from evidence_store.store import Store

    store = Store.open(store_dir(args))
    sweep(store.root)  # decrypted video a killed export left behind (its process is gone)
    return store


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def dump(value) -> None:
    out(json.dumps(value, indent=2, ensure_ascii=False))


# -- commands --------------------------------------------------------------------------------


def cmd_init(args) -> int:
    from evidence_store.store import DEFAULT_SCRYPT_LOG_N, Store

    log_n_text = os.environ.get(SCRYPT_ENV, str(DEFAULT_SCRYPT_LOG_N))
    if not log_n_text.isdigit() or not 1 <= int(log_n_text) <= 22:
        raise UsageError(f"{SCRYPT_ENV} must be a number from 1 to 22")
    root = store_dir(args)
    if args.database is not None:
        from evidence_store.index import check_database

        check_database(args.database)  # before the passphrase prompt: a URL with a password is refused
    if args.objects is not None:
        from evidence_store.objects_s3 import parse_s3_url

        parse_s3_url(args.objects)  # a malformed URL is a usage error, before the prompt
    passphrase = read_passphrase(args, confirm=True)
    with Store.init(root, passphrase, scrypt_log_n=int(log_n_text), database=args.database,
                    objects=args.objects) as store:
        out(f"created evidence store {root}")
        if args.database is not None:
            out(f"index and log: {args.database}")
        if args.objects is not None:
            out(f"objects: {args.objects} (S3 Object Lock, GOVERNANCE retention until each clip's deadline)")
        for recipient in store.recipients:
            out(f"recipient: {recipient}")
        out(f"verifier key: {store.verifier_key}")
        out(f"identity: {root / 'identity.age'} (passphrase-protected; may be moved off the dock, see --identity)")
    return EXIT_OK


def cmd_recipient(args) -> int:
    with open_store(args) as store:
        for recipient in store.recipients:
            out(recipient)
    return EXIT_OK


def _filter(clips, args, now: datetime):
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until", end_of_day=True) if args.until else None
    for clip in clips:
        recorded = parse_time(clip.recorded_at)
        if args.held and not clip.holds:  # quarantined material can be held too; its state stays "quarantined"
            continue
        if args.expiring and (clip.state not in LIVE_STATES or clip.holds
                              or parse_time(clip.deadline) > now + EXPIRING_WITHIN):
            continue
        if args.officer and clip.officer != args.officer:
            continue
        if args.device and clip.device_id != args.device:
            continue
        if since and recorded < since or until and recorded >= until:
            continue
        yield clip


def cmd_list(args) -> int:
    from evidence_store.deletion import pending_requests

    with open_store(args) as store:
        clips = list(_filter(store.clips(include_expired=args.all), args, store.now()))
        pending = pending_requests(store)
    if args.json:
        with open_store(args) as store:
            dump({"clips": [c.summary() | {"sound": _clip_sound(store, c)} for c in clips],
                  "pending_deletions": [_request_dict(r) for r in pending]})
        return EXIT_OK
    header = ("CLIP", "RECORDED", "DEVICE", "OFFICER", "TRIGGER", "JUSTIFICATION", "DEADLINE", "STATE", "HOLDS")
    rows = [(c.clip_id, c.recorded_at[:19] + "Z", c.device_id or "-", c.officer or "-", c.trigger or "-",
             c.justification or "-", c.deadline[:16] + "Z", c.state,
             ",".join(h["case"] or "[erased]" for h in c.holds) or "-") for c in clips]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    if not rows:
        out("(no clips)")
    for r in pending:
        out(f"pending deletion request {r.request_id}: clip {r.clip_id}, by {r.actor or '[erased]'} at {r.time} "
            f"(a different user approves: {PROG} approve {r.request_id} --reason TEXT)")
    for c in clips:
        if c.quarantine_reason:  # why it was rejected, so a reviewer can tell a mistake from a forgery
            out(f"{c.clip_id}: quarantined: {c.quarantine_reason}")
    return EXIT_OK


def _clip_sound(store, clip) -> bool | None:
    """Whether the clip's camera-signed manifest says it has sound; None where there is no
    trusted manifest to ask (quarantined material, an expired clip whose objects are gone)."""
    from evidence_store.clip.manifest import parse_manifest

    if clip.quarantine_reason is not None or not clip.manifest_sha256:
        return None
    try:
        with store.objects.open(clip.manifest_sha256) as f:
            # Verified against the device key at ingest and content-addressed since: parsing is enough.
            return parse_manifest(f.read(), None).sound
    except (OSError, EvidenceError):
        return None


def _request_dict(r) -> dict:
    return {"request_id": r.request_id, "clip": r.clip_id, "time": r.time, "actor": r.actor}


def cmd_show(args) -> int:
    with open_store(args) as store:
        clip = store.clip(args.clip)
        segments = store.segments(clip.clip_id)
        events = store.events(clip_id=clip.clip_id)
        sound = _clip_sound(store, clip)
        from evidence_store.deletion import pending_requests

        pending = pending_requests(store, clip.clip_id)
    if args.json:
        body = clip.summary() | {"sound": sound}
        body["pending_deletions"] = [_request_dict(r) for r in pending]
        body["segments"] = [{"name": s["name"], "bytes": s["bytes"], "sha256": s["sha256"]} for s in segments]
        body["events"] = events
        dump(body)
        return EXIT_OK
    out(f"clip           {clip.clip_id}")
    out(f"state          {clip.state}" + (f" (since {clip.expired_at})" if clip.expired_at else ""))
    if clip.quarantine_reason:
        out(f"quarantine     {clip.quarantine_reason}")
        out(f"claims clip    {clip.claimed_clip_id or '-'}  (untrusted: what the rejected material says)")
    out(f"device         {clip.device_id or '-'}  sequence {clip.sequence if clip.sequence is not None else '-'}")
    out(f"officer        {clip.officer or '-'}")
    out(f"recorded at    {clip.recorded_at}")
    out(f"trigger        {clip.trigger or '-'}" + (f"  justification {clip.justification}" if clip.justification else ""))
    out(f"deadline       {clip.deadline}" + ("  (held)" if clip.holds else ""))
    out(f"ingested at    {clip.ingested_at or '-'}" + ("  LATE" if clip.late else "")
        + (f"  flags: {', '.join(clip.flags)}" if clip.flags else ""))
    out(f"manifest       {clip.manifest_sha256 or '-'}")
    out(f"sound          {'-' if sound is None else 'yes' if sound else 'no (picture only)'}")
    for r in pending:
        out(f"deletion       requested as {r.request_id} by {r.actor or '[erased]'} at {r.time}; awaits another user's approval")
    for hold in clip.holds:
        out(f"hold           {hold['kind']}  case {hold['case'] or '[erased]'}  since {hold['since']}")
    for s in segments:
        out(f"segment        {s['name']}  {s['bytes']} bytes  {s['state']}  sha256 {s['sha256']}")
    for e in events:
        out(f"event {e['index']:>6}   {e['time']}  {e['kind']:<10} {_event_words(e)}")
    return EXIT_OK


def _event_words(e: dict) -> str:
    words = []
    for key in ("actor", "officer", "case", "reason", "cause", "step", "hold_kind", "sequence", "flags", "request"):
        if key in e and e[key] not in (None, [], ""):
            value = ",".join(e[key]) if isinstance(e[key], list) else e[key]
            words.append(f"{key}={value}")
    return "  ".join(str(w) for w in words)


def _show_step(step: str) -> None:
    sys.stderr.write(f"\rchecking {step:<12}")
    sys.stderr.flush()


def cmd_verify(args) -> int:
    from evidence_store.verify import Fault, verify_store

    progress = _show_step if sys.stderr.isatty() else None
    notes: list[Fault] = []
    with open_store(args) as store:
        faults = verify_store(store, args.clips or None, progress=progress, notes=notes, quick=args.quick)
        size = store.log.size()
    if progress:
        sys.stderr.write("\r" + " " * 24 + "\r")
    if args.json:
        dump({"faults": [f.as_dict() for f in faults], "notes": [n.as_dict() for n in notes]}
             | ({"quick": "objects not re-read; recorded SHA-256 and size trusted"} if args.quick else {}))
    else:
        for fault in faults:
            out(f"FAULT {fault.kind}: {fault.where}: {fault.message}")
            out(f"  hint: {fault.hint}")
        for note in notes:  # leftovers of interrupted writes: worth knowing, not a fault
            out(f"note {note.kind}: {note.where}: {note.message}")
            out(f"  hint: {note.hint}")
        if args.quick:
            out("quick: objects were not re-read; their recorded SHA-256 and size were trusted")
        out(f"{len(faults)} fault(s) found" if faults else f"ok: objects, {size} log entries, checkpoints and clips verified")
    return EXIT_INTEGRITY if faults else EXIT_OK


def cmd_hold(args) -> int:
    with open_store(args) as store:
        store.hold(args.clip, case=args.case or "", reason=args.reason or "", kind=args.kind)
    out(f"held {args.clip} ({args.kind}, case {args.case})")
    return EXIT_OK


def cmd_release(args) -> int:
    with open_store(args) as store:
        store.release(args.clip, case=args.case or "", reason=args.reason or "")
        remaining = store.clip(args.clip).holds
    out(f"released {args.clip} (case {args.case}); {len(remaining)} hold(s) remain")
    return EXIT_OK


def cmd_justify(args) -> int:
    with open_store(args) as store:
        store.justify(args.clip, reason=args.reason or "")
    out(f"justified {args.clip}")
    return EXIT_OK


def _require_reason(args) -> None:
    if not args.reason or not args.reason.strip():
        raise UsageError("a reason is required (--reason TEXT)",
                         "hint: the law requires every access to be logged with a reason")


def cmd_view(args) -> int:
    from evidence_store.view import find_player, view_clip

    _require_reason(args)
    with open_store(args) as store:
        store._live_item(args.clip)  # a clip or quarantined material
        if not args.contact_sheet:
            find_player(args.player)
        # The identity is opened first: a wrong passphrase must fail before an access is logged.
        identities = store.identities(read_passphrase(args), identity_file(args))
        result = view_clip(store, args.clip, reason=args.reason, identities=identities, player=args.player,
                           contact_sheet=args.contact_sheet)
    if args.contact_sheet:
        out(f"contact sheet {args.contact_sheet}: {result.frames} frames (view logged as event {result.event_index})")
    else:
        out(f"played {result.bytes_played} bytes (view logged as event {result.event_index})")
    return EXIT_OK


def cmd_export(args) -> int:
    from evidence_store.export import export_clip

    _require_reason(args)
    if not args.out:
        raise UsageError("an output folder is required (--out DIR)")
    if args.case is not None or args.clip is None:
        return cmd_export_case(args)
    with open_store(args) as store:
        store._live_item(args.clip)  # a clip or quarantined material
        identities = store.identities(read_passphrase(args), identity_file(args))
        result = export_clip(store, args.clip, args.out, reason=args.reason, identities=identities)
    out(f"exported {args.clip} to {result.out}: {len(result.files)} files")
    out(f"export events {result.begin_event} (begin) and {result.sealed_event} (sealed); "
        f"SHA256SUMS.note sha256 {result.sums_sha256}")
    out(f"check it with: {PROG} verify-export {result.out}")
    return EXIT_OK


def cmd_verify_export(args) -> int:
    from evidence_store.export import verify_export

    faults = verify_any_package(args.folder, args.vkey, verify_export)
    if args.json:
        dump({"faults": [f.as_dict() for f in faults]})
    else:
        for fault in faults:
            out(f"FAULT {fault.kind}: {fault.where}: {fault.message}")
        if faults:
            out(f"{len(faults)} fault(s) found")
            out(f"  hint: {faults[0].hint}")
        else:
            out(f"ok: {args.folder} is complete and every signature and proof verifies")
            if not args.vkey:
                out("note: compare store.vkey with the verifier key the store published (or pass --vkey)")
    return EXIT_INTEGRITY if faults else EXIT_OK


def cmd_expire(args) -> int:
    now = None
    if args.now is not None:
        if not args.dry_run:
            raise UsageError("--now only previews: use it with --dry-run", "hint: expire deletes by the system clock")
        now = parse_when(args.now, "--now")
    with open_store(args) as store:
        result = store.expire(now=now, dry_run=args.dry_run)
    verb = "would delete" if result.dry_run else "deleted"
    for d in result.deleted:
        kind = "quarantine" if d.quarantined else "clip"
        out(f"{verb} {kind} {d.item_id}: {d.reason}" + (" (late arrival)" if d.late else ""))
    summary = f"{verb} {len(result.deleted)}, kept {len(result.decisions) - len(result.deleted)}"
    for sha in result.orphans:
        out(f"{verb} unreferenced object {sha}: older than the retention, no clip names it")
    if not result.dry_run:
        summary += f"; {result.deleted_objects} object(s) removed, {result.erased_texts} personal text(s) erased"
        if result.removed_tmp:
            summary += f", {result.removed_tmp} stale temporary file(s) removed"
    out(summary + (f" (as of {args.now})" if args.now else ""))
    for fault in result.faults:  # the named items were kept: a human must look at them
        out(f"FAULT {fault}")
    if result.faults:
        out(f"{len(result.faults)} fault(s): what they name was not deleted; run 'bodycam-evidence verify'")
        return EXIT_INTEGRITY
    return EXIT_OK


def cmd_log(args) -> int:
    with open_store(args) as store:
        subject = store.clip(args.clip).clip_id if args.clip else None  # a quarantine item: its qid
        events = store.events(clip_id=subject)
    if args.json:
        dump({"events": events})
        return EXIT_OK
    for e in events:
        subject = e.get("clip") or e.get("device") or e.get("quarantine") or "-"
        out(f"{e['index']:>6}  {e['time']}  {e['kind']:<10} {subject}  {_event_words(e)}")
    return EXIT_OK


def cmd_checkpoint(args) -> int:
    with open_store(args) as store:
        note = store.log.latest_checkpoint()
    sys.stdout.write(note.decode())
    return EXIT_OK


def cmd_consistency(args) -> int:
    """The RFC 9162 consistency proof from OLD to the signed checkpoint of size NEW, in the
    c2sp.org/tlog-witness form that Go's sumdb/tlog checks (docs/FORMAT.md)."""
    from evidence_store.checkpoint import format_consistency_proof, open_checkpoint

    with open_store(args) as store:
        latest = store.log.latest_checkpoint()
        if args.new is None:
            if latest is None:
                raise UsageError("the log has no signed checkpoint yet")
            note = latest
            new = open_checkpoint(note, store.log.verifier).size
        else:
            new, note = args.new, store.log.checkpoint_at(args.new)
            if note is None:
                raise UsageError(f"no signed checkpoint of size {new}",
                                 "hint: 'bodycam-evidence checkpoint' prints the latest; a size between "
                                 "checkpoints has no signed root to prove against")
        if not 1 <= args.old <= new:
            raise UsageError(f"OLD must be between 1 and {new}, got {args.old}",
                             "hint: a log of size 0 is consistent with every log; there is nothing to prove")
        proof = store.log.consistency_proof(args.old, new)
    sys.stdout.write(format_consistency_proof(args.old, proof, note))
    return EXIT_OK


def cmd_record_config(args) -> int:
    with open_store(args) as store:
        recorded = store.record_config()
        files = store.config_hashes()
    for name, sha in files.items():
        out(f"{name}  {sha}")
    out("recorded in the log" if recorded else "unchanged: the log already records these")
    return EXIT_OK


def cmd_report(args) -> int:
    from evidence_store.report import format_report, monthly_report

    with open_store(args) as store:
        report = monthly_report(store, args.month)
    if args.json:
        dump(report)
    else:
        sys.stdout.write(format_report(report))
    return EXIT_OK


COMMANDS = {
    "init": cmd_init, "recipient": cmd_recipient, "list": cmd_list, "show": cmd_show, "verify": cmd_verify,
    "hold": cmd_hold, "release": cmd_release, "justify": cmd_justify, "view": cmd_view, "export": cmd_export,
    "verify-export": cmd_verify_export, "expire": cmd_expire, "log": cmd_log, "checkpoint": cmd_checkpoint,
    "report": cmd_report, "consistency": cmd_consistency,
    "record-config": cmd_record_config,
}


# -- release, case export, four-eyes deletion (issue 14) ----------------------------------------


def add_release_commands(cmd) -> None:
    c = cmd("redact", "write a redacted release package of a clip (faces covered, edits applied)")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--out", metavar="DIR")
    c.add_argument("--edits", metavar="FILE", help="JSON edits: boxes, faces kept, blurred and muted times")
    c.add_argument("--record", metavar="FILE", help="replay a package's redaction.json (same source: same bytes)")
    c.add_argument("--json", action="store_true", help="progress and result as JSON lines")
    c.add_argument("--passphrase-file", metavar="F")
    c.add_argument("--identity", metavar="FILE")
    c = cmd("delete", "request the early deletion of a clip (a second person must approve)")
    c.add_argument("clip", metavar="CLIP")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--json", action="store_true")
    c = cmd("approve", "approve another user's deletion request: the clip is deleted")
    c.add_argument("request", metavar="REQUEST")
    c.add_argument("--reason", metavar="TEXT")
    c.add_argument("--json", action="store_true")


def verify_any_package(folder: str, vkey: str | None, verify_export) -> list:
    """verify-export: a court export, a case export or a release package, by what it holds."""
    from evidence_store.caseexport import INDEX, verify_case_export
    from evidence_store.release import RECORD, verify_release

    root = Path(folder)
    if (root / RECORD).is_file():
        return verify_release(root, vkey)
    if (root / INDEX).is_file():
        return verify_case_export(root, vkey, verify_export)
    return verify_export(root, vkey)


def cmd_redact(args) -> int:
    from evidence_store.release import Progress, redact_clip

    _require_reason(args)
    if not args.out:
        raise UsageError("an output folder is required (--out DIR)")
    progress = None
    if args.json:
        progress = Progress(sys.stdout, json_lines=True)
    elif sys.stderr.isatty():
        progress = Progress(sys.stderr)
    with open_store(args) as store:
        store._live_clip(args.clip)
        identities = store.identities(read_passphrase(args), identity_file(args))
        result = redact_clip(store, args.clip, args.out, reason=args.reason, identities=identities,
                             edits_file=args.edits, record_file=args.record, progress=progress)
    if progress is not None:
        progress.done()
    if args.json:
        out(json.dumps({"result": {"out": str(result.out), "frames": result.frames,
                                   "covered_frames": result.covered_frames, "output_sha256": result.output_sha256,
                                   "begin_event": result.begin_event, "sealed_event": result.sealed_event,
                                   "seconds": round(result.seconds, 2)}}))
        return EXIT_OK
    out(f"redacted {args.clip} to {result.out}: {result.frames} frames, {result.covered_frames} with covered areas "
        f"({result.frames / max(result.seconds, 1e-6):.1f} frames/s)")
    out(f"redact events {result.begin_event} (begin) and {result.sealed_event} (sealed); "
        f"redacted.mp4 sha256 {result.output_sha256}")
    out(f"check review-sheet.png before release; verify with: {PROG} verify-export {result.out}")
    return EXIT_OK


def cmd_export_case(args) -> int:
    from evidence_store.caseexport import export_case

    if args.clip is not None:
        raise UsageError("give either CLIP or --case REF, not both")
    if not (args.case or "").strip():
        raise UsageError("give a clip or --case REF")
    with open_store(args) as store:
        clips = store_case_clips(store, args.case)
        identities = store.identities(read_passphrase(args), identity_file(args))
        result = export_case(store, args.case, clips, args.out, reason=args.reason, identities=identities)
    out(f"exported case {args.case} to {result.out}: {len(result.clips)} clip(s) in recording order")
    out(f"check it with: {PROG} verify-export {result.out}")
    return EXIT_OK


def store_case_clips(store, case: str) -> list:
    clips = [c for c in store.clips() if any(h["case"] == case for h in c.holds)]
    if not clips:
        raise UsageError(f"no clip is held under case {case!r}", "hint: 'bodycam-evidence list --held' shows holds")
    return clips


def cmd_delete(args) -> int:
    from evidence_store.deletion import request_deletion

    _require_reason(args)
    with open_store(args) as store:
        request = request_deletion(store, args.clip, reason=args.reason)
    if args.json:
        dump({"request_id": request.request_id, "clip": request.clip_id, "event": request.event_index})
    else:
        out(f"deletion of {args.clip} requested: request {request.request_id} (event {request.event_index})")
        out(f"a different user must confirm it: {PROG} approve {request.request_id} --reason TEXT")
    return EXIT_OK


def cmd_approve(args) -> int:
    from evidence_store.deletion import approve_deletion

    _require_reason(args)
    with open_store(args) as store:
        done = approve_deletion(store, args.request, reason=args.reason)
    if args.json:
        dump({"request_id": done.request_id, "clip": done.clip_id, "approve_event": done.approve_event,
              "expire_event": done.expire_event, "objects_removed": done.objects_removed})
    else:
        out(f"approved request {done.request_id}: clip {done.clip_id} deleted "
            f"({done.objects_removed} object(s) removed; events {done.approve_event}, {done.expire_event})")
    return EXIT_OK


COMMANDS.update({"redact": cmd_redact, "delete": cmd_delete, "approve": cmd_approve})


# -- migration of a local store to the data centre (issue 12) ------------------------------------


def add_migrate_command(cmd) -> None:
    c = cmd("migrate", "move this local store onto a central database and S3 bucket (same log, same proofs)")
    c.add_argument("--database", metavar="URL", required=True,
                   help="an empty PostgreSQL database (postgresql://USER@HOST/DB; password the libpq way)")
    c.add_argument("--objects", metavar="S3URL", required=True,
                   help="s3://BUCKET/PREFIX of a bucket with versioning and Object Lock (credentials the boto3 way)")


def cmd_migrate(args) -> int:
    from evidence_store.migrate import MARKER_FILE, migrate

    root = store_dir(args)
    result = migrate(root, args.database, args.objects)
    if result.already:
        out(f"{root} already uses {args.database} and {args.objects}: nothing to do")
        return EXIT_OK
    out(f"moved {root}: {result.log_size} log entries and {sum(result.tables.values())} rows in "
        f"{len(result.tables)} tables to {args.database}" if result.tables else f"finished moving {root}")
    out(f"objects: {result.objects_uploaded} uploaded, {result.objects_present} already there; "
        f"each verified and locked in {args.objects}")
    out(f"migrate event: log index {result.event_index}; checkpoint of size {result.log_size + 1} signed")
    out(f"kept: the local evidence.db (frozen: it refuses writes) and objects/; remove them when no longer wanted "
        f"({MARKER_FILE} is gone once the move is finished)")
    return EXIT_OK


COMMANDS.update({"migrate": cmd_migrate})


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (see the table in the module docstring)."""
    return cmdline.run(PROG, argv, _main, errors=(EvidenceError,))


def _main(argv: list[str]) -> int:
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    _check_arguments(args)
    try:
        return COMMANDS[args.command](args)
    except sqlite3.Error as exc:
        # Reads outside a transaction (writes are wrapped by db.transaction): still one line.
        from evidence_store.db import database_error

        raise database_error(exc) from exc


#: Which argument holds which kind of identifier, for every command that has one.
_IDENTIFIER_ARGS = (("clip", "clip", "CLIP"), ("device", "device", "--device"), ("officer", "officer", "--officer"))
_TEXT_ARGS = (("reason", "--reason"), ("case", "--case"))


def _check_arguments(args) -> None:
    """Every identifier, text and date argument through the one checker of its kind."""
    for attr, kind, option in _IDENTIFIER_ARGS:
        if getattr(args, attr, None) is not None:
            cmdline.check_identifier(kind, getattr(args, attr), option)
    for clip in getattr(args, "clips", None) or []:
        cmdline.check_identifier("clip", clip, "CLIP")
    for attr, option in _TEXT_ARGS:
        if getattr(args, attr, None):
            cmdline.check_text(getattr(args, attr), option)
    for attr in ("since", "until", "now"):
        if getattr(args, attr, None) is not None:
            parse_when(getattr(args, attr), f"--{attr}")
    if getattr(args, "month", None) is not None:
        cmdline.parse_month_arg(args.month, "--month")


if __name__ == "__main__":
    sys.exit(main())
