"""Review ("Sichtung"): decrypt a clip into a player through a pipe, or into a contact sheet.

The law keeps a recording beyond two weeks only after review, and every access is logged with a
reason. So the view event is committed *before* the first byte is decrypted, and plaintext video
never touches the disk: it flows from the age reader through a pipe into the player's stdin (or
through PyAV into thumbnails). The contact sheet is the one file written, a grid of stills the
officer asked for.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from evidence_store import events as ev
from evidence_store.clip.age import Identity, Salvage, read_chunks
from evidence_store.clip.ids import format_time, parse_time
from evidence_store.errors import EvidenceError, IntegrityError, UsageError
from evidence_store.vocabulary import ClipState

log = logging.getLogger(__name__)

#: Tried in order when no --player is given; both read MPEG-TS from stdin ("-").
DEFAULT_PLAYERS = (["ffplay", "-autoexit", "-loglevel", "error", "-"], ["mpv", "--really-quiet", "-"])
SHEET_COLUMNS = 4
SHEET_FRAMES = 12
THUMB_WIDTH, THUMB_HEIGHT = 240, 180
CAPTION_HEIGHT = 18
# The loudness strip: a bar from STRIP_FLOOR_DB (empty) to full scale (full width); red near
# clipping (above -6 dBFS), where shouting or a bang is.
STRIP_HEIGHT = 8
STRIP_FLOOR_DB = -60.0


def segment_plaintext(store, segment: dict, identities: Sequence[Identity]) -> Iterator[bytes]:
    """Yield the authenticated plaintext of one segment row, up to what the camera signed.

    A cut segment (power loss) is salvaged up to its last complete chunk and trimmed to the signed
    plaintext length. The running SHA-256 is compared with the camera-signed one at the end;
    IntegrityError if it differs (plaintext already yielded is still authenticated by age).
    """
    want = segment["plaintext_bytes"]
    digest = hashlib.sha256()
    sent = 0
    # Cut before anything was committed (a recording killed at its first instant, perhaps before
    # its age header reached the disk): the camera signed zero plaintext bytes, so there is
    # nothing to decrypt, only the signed hash of nothing to compare below.
    nothing_committed = bool(segment["cut"]) and want == 0
    with store.objects.open(segment["sha256"]) as src:
        salvage = Salvage() if segment["cut"] else None
        for chunk in [] if nothing_committed else read_chunks(src, identities, salvage=salvage):
            if sent + len(chunk) > want:
                chunk = chunk[: want - sent]
            if chunk:
                digest.update(chunk)
                sent += len(chunk)
                yield chunk
            if sent >= want:
                break
    if sent != want or digest.hexdigest() != segment["plaintext_sha256"]:
        raise IntegrityError(f"segment {segment['name']}: decrypted plaintext differs from what the camera signed",
                             where=segment["name"])


def clip_plaintext(store, clip_id: str, identities: Sequence[Identity]) -> Iterator[bytes]:
    """The clip's MPEG-TS plaintext, segment after segment (for a quarantined item: every kept
    file that age can open, see quarantined_plaintext)."""
    for segment in store.segments(clip_id):
        if segment.get("state") == QUARANTINED_STATE:
            yield from quarantined_plaintext(store, segment, identities)
        else:
            yield from segment_plaintext(store, segment, identities)


QUARANTINED_STATE = ClipState.QUARANTINED


def quarantined_plaintext(store, obj: dict, identities: Sequence[Identity]) -> Iterator[bytes]:
    """What age authenticates of one quarantined file, a cut end salvaged. No camera signature
    vouches for it (that is why it was quarantined); a file that is no age file for our
    identities, or is damaged, is skipped with a log line, so the rest can still be reviewed."""
    try:
        with store.objects.open(obj["sha256"]) as src:
            yield from read_chunks(src, identities, salvage=Salvage())
    except EvidenceError as exc:
        log.warning("quarantined file %s: %s; skipped", obj["name"], exc)


class IterReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (PyAV reads from it; nothing on disk)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            try:
                self._buf = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


@dataclass
class ViewResult:
    event_index: int
    bytes_played: int = 0
    frames: int = 0


def find_player(player: str | None) -> list[str]:
    """The player command: ``--player CMD`` split like a shell would, else ffplay or mpv."""
    if player:
        cmd = shlex.split(player)
        if not cmd or shutil.which(cmd[0]) is None:
            raise UsageError(f"player {player!r} not found")
        return cmd
    for cmd in DEFAULT_PLAYERS:
        if shutil.which(cmd[0]):
            return cmd
    raise UsageError("no player found (ffplay or mpv)", "hint: give one with --player CMD, or use --contact-sheet PNG")


def view_clip(store, clip_id: str, *, reason: str, identities: Sequence[Identity], player: str | None = None,
              contact_sheet: str | Path | None = None) -> ViewResult:
    """Log a view event, then play the clip through a pipe or write a contact sheet PNG.

    Raises UsageError before logging anything if the clip, reason or player is not usable.
    """
    clip_id = store._live_item(clip_id).clip_id
    cmd = [] if contact_sheet else find_player(player)
    appended = store.log_access(ev.VIEW, clip_id, reason=reason,
                                data={"output": "contact-sheet" if contact_sheet else "player"})
    result = ViewResult(appended.index)
    chunks = clip_plaintext(store, clip_id, identities)
    if contact_sheet:
        info = store.clip(clip_id)
        result.frames = write_contact_sheet(chunks, Path(contact_sheet), parse_time(info.recorded_at), clip_id)
        return result
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    pipe = proc.stdin
    assert pipe is not None  # stdin=PIPE
    try:
        for chunk in chunks:
            pipe.write(chunk)
            result.bytes_played += len(chunk)
        pipe.close()
    except BrokenPipeError:
        log.info("the player closed its input early")  # the officer closed the window: fine
    except BaseException:
        # Decryption failed partway (a damaged object) or Ctrl-C: the player still waits for
        # input on its stdin, so waiting for it without closing that pipe would hang forever.
        # Close it and stop the player; what it showed so far was authenticated plaintext.
        _stop(proc)
        raise
    finally:
        code = proc.wait()
    if code not in (0, None):
        log.warning("player %s exited with %s", cmd[0], code)
    return result


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Close the player's input and terminate it (kill it if it ignores that for ``grace`` s)."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass  # the pipe is already broken
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()


def write_contact_sheet(chunks: Iterator[bytes], path: Path, started_at, title: str,
                        frames: int = SHEET_FRAMES) -> int:
    """Decode the stream with PyAV and write a PNG grid of ``frames`` stills with their times;
    with sound, a loudness strip under each still (its loudest moment until the next still: a
    shout or a bang is seen at a glance, where people would rather look than read).

    Returns the number of stills. Raises EvidenceError if no frame can be decoded.
    """
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    # One pass only (the stream is a pipe, the length unknown up front): keep a thumbnail every
    # ``step`` seconds, doubling the step when too many pile up, then thin to ``frames`` evenly.
    thumbs: list[tuple[float, Image.Image]] = []
    loudness: list[tuple[float, float]] = []  # (time, peak dBFS) of each sound frame
    try:
        container = av.open(IterReader(chunks), "r", format="mpegts")
        video = container.streams.video[:1]  # none in a clip stopped before its first picture
        sound = container.streams.audio[:1]
        step, next_at = 0.5, 0.0
        for frame in container.decode(*video, *sound) if video else ():
            if isinstance(frame, av.AudioFrame):
                peak = float(np.abs(frame.to_ndarray()).max(initial=0.0))
                loudness.append((float(frame.time or 0.0), 20 * math.log10(max(peak, 1e-5))))
                continue
            if not isinstance(frame, av.VideoFrame):  # only picture and sound streams are decoded
                continue
            t = float(frame.time or 0.0)
            if t + 1e-6 < next_at:
                continue
            image = frame.to_image()
            image.thumbnail((THUMB_WIDTH, THUMB_HEIGHT))
            thumbs.append((t, image))
            next_at = t + step
            if len(thumbs) > 4 * frames:  # long clip: halve the density and keep going
                thumbs = thumbs[::2]
                step *= 2
        container.close()
    except av.EOFError:
        pass  # the stream ends early (an empty or cut clip): the stills found so far, if any
    except av.FFmpegError as exc:
        raise EvidenceError(f"cannot decode the clip's video ({exc})") from None
    if not thumbs:
        raise EvidenceError("the clip holds no decodable video frame",
                            "hint: a recording stopped in its first instant holds none; "
                            "'export' still gives its signed files")
    if len(thumbs) > frames:
        thumbs = [thumbs[round(i * (len(thumbs) - 1) / (frames - 1))] for i in range(frames)]
    rows = (len(thumbs) + SHEET_COLUMNS - 1) // SHEET_COLUMNS
    strip = STRIP_HEIGHT if loudness else 0
    cell_h = THUMB_HEIGHT + strip + CAPTION_HEIGHT
    sheet = Image.new("RGB", (SHEET_COLUMNS * THUMB_WIDTH, rows * cell_h + CAPTION_HEIGHT), "black")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), f"clip {title}", fill="white")
    for i, (t, image) in enumerate(thumbs):
        x, y = (i % SHEET_COLUMNS) * THUMB_WIDTH, CAPTION_HEIGHT + (i // SHEET_COLUMNS) * cell_h
        sheet.paste(image, (x, y))
        if strip:
            until = thumbs[i + 1][0] if i + 1 < len(thumbs) else float("inf")
            level = max((db for at, db in loudness if t <= at < until), default=STRIP_FLOOR_DB)
            share = min(1.0, max(0.0, (level - STRIP_FLOOR_DB) / -STRIP_FLOOR_DB))
            draw.rectangle((x, y + THUMB_HEIGHT + 1, x + round(share * (THUMB_WIDTH - 1)),
                            y + THUMB_HEIGHT + strip - 2), fill=(255, 64, 64) if level > -6 else (64, 200, 64))
        stamp = format_time(started_at + timedelta(seconds=t))[11:23]
        draw.text((x + 4, y + THUMB_HEIGHT + strip + 2), f"+{t:6.1f}s  {stamp}Z", fill="white")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Stills of a recording are personal data: readable by their user alone (0600), written to a
    # private temporary name and renamed, so no other user ever sees a partial or open file.
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            sheet.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(thumbs)
