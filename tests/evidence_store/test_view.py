"""view: the access is logged before plaintext exists; plaintext only flows through a pipe."""

import hashlib
import sys
from pathlib import Path

import pytest
from PIL import Image

from evidence_store.errors import UsageError
from evidence_store.view import find_player, view_clip
from tests.evidence_store.conftest import PASSPHRASE, local_only, tamper_object


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def test_view_player_receives_plaintext_through_pipe(store, add_clip, tmp_path):
    clip = add_clip()
    digest_file = tmp_path / "digest"
    before = files_under(store.root)
    result = view_clip(store, clip.clip_id, reason="review", identities=store.identities(PASSPHRASE),
                       player=f"sh -c 'sha256sum > {digest_file}'")
    assert digest_file.read_text().split()[0] == hashlib.sha256(clip.plaintext["seg-00000.age"]).hexdigest()
    assert result.bytes_played == len(clip.plaintext["seg-00000.age"])
    # No plaintext file appeared in the store (the database may grow, nothing else).
    new = {p.name for p in files_under(store.root) - before}
    assert new <= {"evidence.db-wal", "evidence.db-shm"}


@local_only
def test_view_event_committed_before_player_starts(store, add_clip, tmp_path):
    clip = add_clip()
    seen = tmp_path / "seen"
    # The "player" looks at the log before reading a byte: the view event must already be there.
    script = tmp_path / "player.py"
    script.write_text(
        "import sqlite3, sys\n"
        f"c = sqlite3.connect({str(store.root / 'evidence.db')!r})\n"
        "kind = c.execute('SELECT kind FROM events ORDER BY idx DESC LIMIT 1').fetchone()[0]\n"
        f"open({str(seen)!r}, 'w').write(kind)\n"
        "sys.stdin.buffer.read()\n")
    view_clip(store, clip.clip_id, reason="review", identities=store.identities(PASSPHRASE),
              player=f"{sys.executable} {script}")
    assert seen.read_text() == "view"


def test_view_contact_sheet_png_with_frames(store, add_clip, tmp_path):
    clip = add_clip(seconds=2.0)
    sheet = tmp_path / "sheet.png"
    result = view_clip(store, clip.clip_id, reason="review", identities=store.identities(PASSPHRASE), contact_sheet=sheet)
    assert result.frames >= 4
    assert sheet.stat().st_mode & 0o777 == 0o600  # stills of a recording: for their user alone
    with Image.open(sheet) as image:
        assert image.format == "PNG" and image.width == 4 * 240
    (event,) = [e for e in store.events(clip_id=clip.clip_id) if e["kind"] == "view"]
    assert event["reason"] == "review" and event["output"] == "contact-sheet"


def test_view_unknown_player_refused_before_logging(store, add_clip):
    clip = add_clip()
    size = store.log.size()
    with pytest.raises(UsageError, match="not found"):
        view_clip(store, clip.clip_id, reason="r", identities=store.identities(PASSPHRASE), player="no-such-player-x")
    assert store.log.size() == size


def test_view_expired_clip_refused(store, add_clip, clock):
    from datetime import timedelta

    clip = add_clip(age=timedelta(days=15))
    store.expire()
    with pytest.raises(UsageError, match="has expired"):
        view_clip(store, clip.clip_id, reason="r", identities=[], player="cat")


def test_view_find_player_explicit_command_split_like_shell():
    assert find_player("cat -u") == ["cat", "-u"]


def test_view_damaged_object_partway_raises_and_player_does_not_hang(store, add_clip, tmp_path):
    import threading

    from evidence_store.errors import EvidenceError

    clip = add_clip(seconds=4.0)
    (segment,) = store.segments(clip.clip_id)
    assert segment["bytes"] > 2 * 65536  # so the first chunks decrypt and reach the player
    data = bytearray(store.objects.read(segment["sha256"]))
    data[-100] ^= 0x01  # the last chunk no longer authenticates
    tamper_object(store, segment["sha256"], bytes(data))
    got = tmp_path / "got"
    outcome = {}

    def run():
        try:
            view_clip(store, clip.clip_id, reason="review", identities=store.identities(PASSPHRASE),
                      player=f"sh -c 'cat > {got}'")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "view hangs waiting for a player whose input was never closed"
    assert isinstance(outcome.get("error"), EvidenceError)
    assert 0 < got.stat().st_size < len(clip.plaintext["seg-00000.age"])  # played up to the damage
