#!/usr/bin/env bash
# One shift, end to end, with the real command lines: the same ones the README documents.
# Usage: demo.sh [FOLDER]   (default ./demo-data). Writes only under FOLDER; can be run again.
set -euo pipefail

DIR=${1:-demo-data}
case "$DIR" in
  "" | "/" | "." | "..") echo "demo: refusing to use '$DIR' as the demo folder" >&2; exit 2 ;;
esac
rm -rf -- "$DIR"
mkdir -p -- "$DIR"
DIR=$(cd -- "$DIR" && pwd)

STORE="$DIR/store"
OUTBOX="$DIR/camera-outbox"
PASS="$DIR/passphrase"
EXPORT="$DIR/court-export"
# A low scrypt work factor keeps the demo quick; a real store uses age's default (2^18).
export BODYCAM_SCRYPT_LOG_N=${BODYCAM_SCRYPT_LOG_N:-12}
export BODYCAM_PASSPHRASE_FILE="$PASS"
SECONDS_PER_CLIP=${DEMO_SECONDS:-3}

# The camera's clock for a recording made DAYS HOURS MINUTES ago (UTC).
ago() { date -u -d "now -$1 days -$2 hours -$3 minutes" +%Y-%m-%dT%H:%M:%SZ; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
# Clip ids come from `list --json`: the n-th clip by recording time, or the emergency one.
pick() {
  python3 -c '
import json, sys
clips = sorted(json.load(sys.stdin)["clips"], key=lambda c: c["recorded_at"])
if sys.argv[1] == "emergency":
    clips = [c for c in clips if c["trigger"] == "emergency"]
    print(clips[0]["clip_id"])
else:
    print(clips[int(sys.argv[1])]["clip_id"])
' "$1"
}

say "1. The evidence store is created. Its identity (the only key that can decrypt video) is protected by a passphrase."
printf 'correct horse battery staple\n' > "$PASS"
chmod 600 "$PASS"
run bodycam-evidence --store "$STORE" init --passphrase-file "$PASS"

say "2. A new camera makes its own signing key; the dock enrolls it and hands it the store's public encryption key."
run bodycam-device init --outbox "$OUTBOX" --device-id cam-07
run bodycam-dock --store "$STORE" enroll "$OUTBOX" --device-id cam-07
run bodycam-dock --store "$STORE" assign cam-07 --officer "PK-4711"
# Not docked again before step 7: the demo sets the camera's clock back to make old clips, and
# after a docking the store would rightly refuse a start before it (the clip chain proves the
# clip newer) and count two weeks from that docking instead.
echo "The assignment reaches the camera at its next docking (step 7); until then the store names the officer."

say "3. Sixteen days ago: an officer announces a recording (button, amber light, beep), then records. Then the camera sits in a locker, undocked."
run bodycam-device simulate --outbox "$OUTBOX" --seconds "$SECONDS_PER_CLIP" --clock "$(ago 16 0 0)"

say "4. Two weeks ago (less 30 minutes): a dispute at a kiosk, announced and recorded. Nobody will need it."
run bodycam-device simulate --outbox "$OUTBOX" --seconds "$SECONDS_PER_CLIP" --clock "$(ago 13 23 30)"

say "5. Two weeks ago (less 20 minutes): an officer is assaulted; announced and recorded. This one will be needed as evidence."
run bodycam-device simulate --outbox "$OUTBOX" --seconds "$SECONDS_PER_CLIP" --clock "$(ago 13 23 20)"

say "6. Today: imminent danger. The emergency button records at once, without announcement."
run bodycam-device simulate --outbox "$OUTBOX" --seconds "$SECONDS_PER_CLIP" --emergency

say "6b. Later: an officer follows a suspect into a lawyer's office (a § 53 StPO place) and keeps recording by mistake."
run bodycam-device simulate --outbox "$OUTBOX" --seconds "$SECONDS_PER_CLIP"

echo "The camera holds only encrypted segments, signed journals and manifests:"
run bodycam-device status --outbox "$OUTBOX"

say "7. The camera is docked. The dock verifies every signature and hash, stores, receipts, clears. The 16-day-old clip is past its two weeks: deleted at once."
run bodycam-dock --store "$STORE" ingest "$OUTBOX"
echo "(The demo set the camera's clock back to make old clips; the camera had not docked since, so their starts stand.)"
run bodycam-dock --store "$STORE" status
echo "Left on the camera: only the store's signed receipts."
run ls "$OUTBOX/clips" "$OUTBOX/receipts"

say "8. The evidence officer sees what is stored and checks the whole store: every object, the log, every checkpoint."
run bodycam-evidence --store "$STORE" list
LIST_JSON=$(bodycam-evidence --store "$STORE" list --json)
EMERGENCY=$(pick emergency <<<"$LIST_JSON")
ROUTINE=$(pick 0 <<<"$LIST_JSON")
EVIDENCE=$(pick 1 <<<"$LIST_JSON")
PRIVILEGED=$(pick -1 <<<"$LIST_JSON")
LATE=$(bodycam-evidence --store "$STORE" list --all --json | pick 0)
run bodycam-evidence --store "$STORE" show "$EMERGENCY"
run bodycam-evidence --store "$STORE" verify

say "9. The emergency recording must be justified: the officer records why there was no announcement."
run bodycam-evidence --store "$STORE" justify "$EMERGENCY" --reason "Attack with a knife; no time to announce"

say "10. Review before keeping (the law keeps a clip beyond two weeks only after review): view, logged with a reason."
run bodycam-evidence --store "$STORE" view "$EVIDENCE" --reason "Review for complaint 2026/123" \
    --contact-sheet "$DIR/review-contact-sheet.png"
run bodycam-evidence --store "$STORE" hold "$EVIDENCE" --case "StA-2026-123" \
    --reason "Evidence of assault on officer" --kind evidence

say "11. The hourly expiry runs. Both two-week-old clips fall due before the next run: the kiosk clip is deleted, the held one stays."
echo "First a preview (nothing is deleted):"
run bodycam-evidence --store "$STORE" expire --dry-run
run bodycam-evidence --store "$STORE" expire
run bodycam-evidence --store "$STORE" list --all
run bodycam-evidence --store "$STORE" verify

say "12. Export for court: decrypted video, MP4, signed manifest and journal, log proofs, signed file list."
run bodycam-evidence --store "$STORE" export "$EVIDENCE" --out "$EXPORT" --reason "Requested by public prosecutor, StA-2026-123"
echo "Anyone can check the package offline, without the store:"
run bodycam-evidence verify-export "$EXPORT"

say "12a. The person recorded in the emergency clip asks for a review and a copy. The copy is redacted: other faces covered (found by a DNN face detector), the officer's edits applied."
run bodycam-evidence --store "$STORE" hold "$EMERGENCY" --case "DSB-2026-7" \
    --reason "Recorded person asked for review and a copy" --kind subject-request
cat > "$DIR/edits.json" <<'JSON'
{"format": "bodycam-edits/v1",
 "boxes": [{"from": 0.0, "to": 1.0, "box": [0, 0, 160, 120], "label": "shop window with a customer"}],
 "keep_faces": [],
 "blur": [],
 "mute": [{"from": 0.5, "to": 1.5}]}
JSON
run cat "$DIR/edits.json"
run bodycam-evidence --store "$STORE" redact "$EMERGENCY" --reason "Copy for the recorded person (Art. 15 DSGVO)" \
    --out "$DIR/subject-copy" --edits "$DIR/edits.json"
echo "The evidence officer checks review-sheet.png (every covered area outlined), then hands out the folder; anyone can check it:"
run bodycam-evidence verify-export "$DIR/subject-copy"

say "12b. The lawyer's-office recording must be deleted at once: one user requests it, a different user (the superior) approves."
run bodycam-evidence --store "$STORE" delete "$PRIVILEGED" --reason "Recorded in a lawyer's office (§ 53 StPO)"
REQUEST=$(bodycam-evidence --store "$STORE" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending_deletions"][0]["request_id"])')
run bodycam-evidence --store "$STORE" list
echo "The same user cannot approve their own request:"
if run bodycam-evidence --store "$STORE" approve "$REQUEST" --reason "approving myself"; then
  echo "demo: self-approval was accepted: this is a bug" >&2; exit 1
fi
echo "The superior approves (sudo tells the store who they are):"
run env SUDO_USER=supervisor-sg bodycam-evidence --store "$STORE" approve "$REQUEST" --reason "Agreed: § 53 StPO, delete at once"
run bodycam-evidence --store "$STORE" log --clip "$PRIVILEGED"
run bodycam-evidence --store "$STORE" verify

say "13. Oversight: the monthly report for the data-protection officer, and the event log."
run bodycam-evidence --store "$STORE" report
echo "Every event about the late clip, from ingest to deletion; the log keeps proving it after the video is gone:"
run bodycam-evidence --store "$STORE" log --clip "$LATE"
run bodycam-evidence --store "$STORE" log --clip "$ROUTINE"
run bodycam-evidence --store "$STORE" checkpoint

say "Done. Everything above lives in $DIR."
