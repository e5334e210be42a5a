"""Mutation fuzzer for the dock: a real outbox (real signed clips of two enrolled cameras), mutated
at random and in structured ways, then ingested. After every ingest:

* no traceback: the ingest returns a report or refuses the partition with one DockError, and
  nothing was logged as an internal error;
* nothing deleted unstored: every file that was on the camera before the ingest and is gone
  after it has its exact bytes (SHA-256) recorded in the store, as a stored clip's file or as
  quarantined material; in particular no genuine clip's segment is lost;
* ``verify`` finds no fault.

The seed is fixed (BODYCAM_FUZZ_SEED overrides it) and the default count keeps ``make test``
quick; BODYCAM_FUZZ_ITERATIONS=5000 runs thousands. A failure names the seed, the iteration and
the mutations, so it replays exactly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import shutil
import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dock.errors import DockError
from dock.ingest import Ingester
from dock.lock import DeviceLocks
from evidence_store.clip import canonical
from evidence_store.clip.devkey import MANIFEST_CONTEXT, b64
from evidence_store.clip.ids import new_clip_id
from evidence_store.clip.outbox import DeviceRecord
from evidence_store.store import Store
from evidence_store.verify import verify_store
from tests.clock import FakeClock
from tests.dock.conftest import new_camera

SEED = int(os.environ.get("BODYCAM_FUZZ_SEED", "1312"))
ITERATIONS = int(os.environ.get("BODYCAM_FUZZ_ITERATIONS", "40"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class World:
    """The template: a store with two enrolled cameras; cam-07's outbox holds its genuine clips,
    cam-08's outbox holds clips that mutations copy across (another camera's files)."""

    def __init__(self, root: Path):
        self.root = root
        self.store = root / "store"
        Store.init(self.store, b"pw", scrypt_log_n=4).close()
        with Store.open(self.store) as store:
            self.cam = new_camera(store, root / "outbox", "cam-07")
            self.other = new_camera(store, root / "other", "cam-08")
        now = datetime.now(UTC)
        self.genuine = [self.cam.clip(started_at=now - timedelta(minutes=30 - i), segments=1 + i % 2) for i in range(4)]
        self.foreign = [self.other.clip(started_at=now - timedelta(minutes=20)) for _ in range(2)]
        self.genuine_segments = {_sha(b) for c in self.genuine for b in c.segments.values()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("fuzz-world"))


# -- mutations: each takes (rng, outbox root, world) and returns a short description -------------


def _clip_dirs(outbox: Path) -> list[Path]:
    base = outbox / "clips"
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()) if base.is_dir() else []


def _files(outbox: Path) -> list[Path]:
    out = []
    for d in _clip_dirs(outbox):
        for dirpath, _dirs, names in os.walk(d):  # never follows links
            out += [Path(dirpath) / n for n in names if stat.S_ISREG(os.lstat(Path(dirpath) / n).st_mode)]
    return sorted(out)


def _pick_file(rng, outbox):
    files = _files(outbox)
    return rng.choice(files) if files else None


def _pick_dir(rng, outbox):
    dirs = _clip_dirs(outbox)
    return rng.choice(dirs) if dirs else None


def m_flip(rng, outbox, w):
    f = _pick_file(rng, outbox)
    if f is None:
        return "flip: nothing"
    data = bytearray(f.read_bytes())
    if data:
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    f.write_bytes(bytes(data))
    return f"flip {f.name}"


def m_truncate(rng, outbox, w):
    f = _pick_file(rng, outbox)
    if f is None:
        return "truncate: nothing"
    data = f.read_bytes()
    f.write_bytes(data[: rng.randrange(len(data) + 1)])
    return f"truncate {f.name}"


def m_delete(rng, outbox, w):
    f = _pick_file(rng, outbox)
    if f is not None:
        f.unlink()
    return f"delete {f.name if f else '-'}"


def _odd_name(rng) -> str:
    raw = rng.choice([b"seg-00007.age", b"\xff\xfe-bad", b"caf\xe9", b"notes.txt", b"journal.old", b".hidden",
                      b"seg-1.age", b"a" * 200, b"manifest~", b"\x01ctl"])
    return os.fsdecode(raw)


def m_rename(rng, outbox, w):
    f = _pick_file(rng, outbox)
    if f is None:
        return "rename: nothing"
    target = f.with_name(_odd_name(rng))
    os.replace(f, target)
    return f"rename {f.name} -> {target.name!r}"


def m_junk_file(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None:
        return "junk: nothing"
    (d / _odd_name(rng)).write_bytes(rng.randbytes(rng.randrange(0, 5000)))
    return f"junk file in {d.name[:13]}"


def m_symlink(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None:
        return "link: nothing"
    name = rng.choice(["seg-00000.age", "journal", "manifest", "extra"])
    target = rng.choice(["/etc/passwd", str(w.root / "outbox" / "device.json"), "../" + d.name, "/dev/zero"])
    path = d / name
    if path.exists() or path.is_symlink():
        path.unlink() if not path.is_dir() or path.is_symlink() else shutil.rmtree(path)
    path.symlink_to(target)
    return f"symlink {name} -> {target}"


def m_special(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None:
        return "special: nothing"
    name = rng.choice(["seg-00001.age", "fifo", "journal"])
    path = d / name
    if path.exists() and not path.is_dir():
        path.unlink()
    elif path.is_dir():
        return "special: skipped"
    if rng.random() < 0.5:
        os.mkfifo(path)
        return f"fifo {name}"
    sock = socket.socket(socket.AF_UNIX)
    short = Path("/tmp") / f"fz-{os.getpid()}-{rng.randrange(1 << 30)}"
    sock.bind(str(short))
    sock.close()
    os.replace(short, path)
    return f"socket {name}"


def m_subfolder(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None:
        return "subfolder: nothing"
    depth = rng.randint(1, 7)
    sub = d.joinpath(*[rng.choice(["x", "seg-00000.age", "journal"]) for _ in range(depth)])
    if any(p.exists() and not p.is_dir() for p in [sub, *sub.parents] if str(p).startswith(str(d))):
        return "subfolder: blocked"
    sub.mkdir(parents=True, exist_ok=True)
    (sub / "data").write_bytes(rng.randbytes(300))
    return f"subfolder depth {depth}"


def m_copy_file_across(rng, outbox, w):
    files, dirs = _files(outbox), _clip_dirs(outbox)
    if not files or not dirs:
        return "copy: nothing"
    src, dst = rng.choice(files), rng.choice(dirs)
    name = rng.choice([src.name, "seg-00000.age", "manifest", "journal"])
    if (dst / name).is_dir() or (dst / name) == src:
        return "copy: blocked"
    shutil.copyfile(src, dst / name)
    return f"copy {src.parent.name[:13]}/{src.name} -> {dst.name[:13]}/{name}"


def m_swap_manifests(rng, outbox, w):
    dirs = [d for d in _clip_dirs(outbox) if (d / "manifest").is_file()]
    if len(dirs) < 2:
        return "swap: nothing"
    a, b = rng.sample(dirs, 2)
    ma, mb = (a / "manifest").read_bytes(), (b / "manifest").read_bytes()
    (a / "manifest").write_bytes(mb)
    (b / "manifest").write_bytes(ma)
    return f"swap manifests {a.name[:13]} {b.name[:13]}"


def m_foreign_clip(rng, outbox, w):
    src = rng.choice(w.foreign)
    name = src.clip_id if rng.random() < 0.5 else new_clip_id(datetime.now(UTC))
    dst = outbox / "clips" / name
    if dst.exists():
        return "foreign: exists"
    shutil.copytree(w.root / "other" / "clips" / src.clip_id, dst)
    return f"foreign clip as {name[:13]}"


def m_duplicate_clip(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None:
        return "dup: nothing"
    dst = outbox / "clips" / new_clip_id(datetime.now(UTC))

    def specials(folder, names):  # fifos and sockets cannot be copied; a copy leaves them out
        return [n for n in names if not (os.path.islink(os.path.join(folder, n))
                                         or stat.S_ISREG(os.lstat(os.path.join(folder, n)).st_mode)
                                         or stat.S_ISDIR(os.lstat(os.path.join(folder, n)).st_mode))]

    shutil.copytree(d, dst, symlinks=True, ignore=specials)
    return f"duplicate {d.name[:13]}"


def m_device_json(rng, outbox, w):
    path = outbox / "device.json"
    if path.is_symlink() or path.exists():
        path.unlink()
    choice = rng.randrange(6)
    if choice == 0:
        path.write_bytes(DeviceRecord("cam-08", w.other.device.public_key).to_bytes())
    elif choice == 1:
        path.write_bytes(b'{"format":"bodycam-device/v1","device_id":"cam-07","public_key":' + b"9" * 20000 + b"}")
    elif choice == 2:
        path.write_bytes(b"[" * 50000 + b"]" * 50000)
    elif choice == 3:
        path.write_bytes(b"\xff\xfe\x00junk")
    elif choice == 4:
        path.symlink_to("/etc/passwd")
    return f"device.json variant {choice}"


def m_enrollment(rng, outbox, w):
    path = outbox / "enrollment"
    if path.exists() or path.is_symlink():
        path.unlink()
    choice = rng.randrange(3)
    if choice == 0:
        path.write_bytes(b"{" * 3000 + b"\n\n\xe2\x80\x94 x\n")
    elif choice == 1:
        shutil.copyfile(w.root / "other" / "enrollment", path)
    return f"enrollment variant {choice}"


def _resign(path: Path, w, change) -> str:
    try:
        outer = canonical.loads(path.read_bytes(), "manifest")
        body = outer["manifest"]
    except Exception:  # noqa: BLE001 - already mutated beyond JSON: nothing to re-sign
        return "resign: not a manifest"
    raw = change(body)
    key = w.cam.device.key if body.get("device_id") == "cam-07" else w.other.device.key
    sig = b64(key.sign(MANIFEST_CONTEXT, raw))
    path.write_bytes(b'{"manifest":' + raw + b',"signature":"' + sig.encode() + b'"}')
    return "resigned"


def m_manifest_fields(rng, outbox, w):
    dirs = [d for d in _clip_dirs(outbox) if (d / "manifest").is_file() and not (d / "manifest").is_symlink()]
    if not dirs:
        return "manifest: nothing"
    d = rng.choice(dirs)
    kind = rng.choice(["huge-number", "deep", "date-only", "drop-field", "future", "past", "naive", "negative",
                       "sequence-jump", "float"])

    def change(body):
        b = dict(body)
        if kind == "huge-number":
            return canonical.dumps(b).replace(b'"sequence":', b'"sequence":' + b"9" * rng.randint(20, 6000), 1)
        if kind == "deep":
            return canonical.dumps(b).replace(b'"bookmarks":[]', b'"bookmarks":' + b"[" * 3000 + b"]" * 3000, 1)
        if kind == "date-only":
            b["started_at"] = "2026-11-30Z"
        elif kind == "drop-field":
            b.pop(rng.choice(sorted(b)))
        elif kind == "future":
            b["started_at"] = "2099-01-01T00:00:00.000Z"
        elif kind == "past":
            b["started_at"] = "2001-01-01T00:00:00.000Z"
        elif kind == "naive":
            b["ended_at"] = "2026-11-30T10:00:00"
        elif kind == "negative":
            b["sequence"] = -1
        elif kind == "sequence-jump":
            b["sequence"] = b.get("sequence", 0) + 5 if isinstance(b.get("sequence"), int) else 5
        elif kind == "float":
            return canonical.dumps(b).replace(b'"prerecord_seconds":0', b'"prerecord_seconds":1e400', 1)
        return canonical.dumps(b)

    return f"manifest {kind} in {d.name[:13]}: " + _resign(d / "manifest", w, change)


def m_journal_numbers(rng, outbox, w):
    dirs = [d for d in _clip_dirs(outbox) if (d / "journal").is_file() and not (d / "journal").is_symlink()]
    if not dirs:
        return "journal: nothing"
    path = rng.choice(dirs) / "journal"
    data = path.read_bytes()
    variant = rng.randrange(3)
    if variant == 0:
        data = data.replace(b'"bytes":', b'"bytes":' + b"7" * rng.randint(10, 5000), 1)
    elif variant == 1:
        data = b"[" * 10000 + b"\n" + data
    else:
        data = data + b'{"a":NaN}\n'
    path.write_bytes(data)
    return f"journal variant {variant}"


def m_bad_clip_folder(rng, outbox, w):
    base = outbox / "clips"
    name = os.fsdecode(rng.choice([b"not-a-clip", b"\xff\xfe", b"01930000-0000-7000-8000-00000000000"]))
    (base / name).mkdir(exist_ok=True)
    ((base / name) / "manifest").write_bytes(b"{}")
    return f"bad folder {name!r}"


def m_empty_manifest(rng, outbox, w):
    d = _pick_dir(rng, outbox)
    if d is None or (d / "manifest").is_dir():
        return "empty manifest: nothing"
    (d / "manifest").unlink(missing_ok=True)
    (d / "manifest").write_bytes(b"")
    return f"empty manifest {d.name[:13]}"


MUTATIONS = [m_flip, m_truncate, m_delete, m_rename, m_junk_file, m_symlink, m_special, m_subfolder,
             m_copy_file_across, m_swap_manifests, m_foreign_clip, m_duplicate_clip, m_device_json, m_enrollment,
             m_manifest_fields, m_journal_numbers, m_bad_clip_folder, m_empty_manifest]


# -- the checks ---------------------------------------------------------------------------------


def _camera_files(outbox: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every regular file under clips/ (links and specials carry no data)."""
    out = {}
    base = outbox / "clips"
    for dirpath, _dirnames, filenames in os.walk(base):
        for name in filenames:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                out[str(path.relative_to(base))] = _sha(path.read_bytes())
    return out


def _recorded_hashes(store_root: Path) -> set[str]:
    with Store.open(store_root) as store:
        q = store.conn.execute
        hashes = {r[0] for r in q("SELECT sha256 FROM segments")}
        hashes |= {r[0] for r in q("SELECT sha256 FROM quarantine_objects")}
        for a, b in q("SELECT manifest_sha256, journal_sha256 FROM clips"):
            hashes |= {a, b}
        for a, b in q("SELECT manifest_sha256, journal_sha256 FROM quarantine"):
            hashes |= {h for h in (a, b) if h}
    return hashes


class _Watch(logging.Handler):
    """Collects log records that carry a traceback or report an internal error."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record):
        if record.exc_info or "internal error" in record.getMessage():
            self.bad.append(self.format(record))


def run_one(world: World, where: Path, rng: random.Random) -> list[str]:
    store_root = where / "store"
    outbox = where / "outbox"
    shutil.copytree(world.store, store_root)
    shutil.copytree(world.root / "outbox", outbox, symlinks=True)
    done = [m(rng, outbox, world) for m in rng.sample(MUTATIONS, rng.randint(1, 3))]
    before = _camera_files(outbox)
    watch = _Watch()
    logging.getLogger().addHandler(watch)
    try:
        ingester = Ingester(lambda: Store.open(store_root), locks=DeviceLocks(where / "state" / "locks"), clock=FakeClock(),
                            state_dir=where / "state")
        try:
            ingester.ingest(outbox)
        except DockError:
            pass  # the partition refused as a whole, in one line: nothing on it was touched
    finally:
        logging.getLogger().removeHandler(watch)
    assert not watch.bad, (done, watch.bad)
    after = _camera_files(outbox)
    gone = {sha for rel, sha in before.items() if rel not in after or after[rel] != sha}
    gone -= set(after.values())  # moved, not lost
    unstored = gone - _recorded_hashes(store_root)
    assert not unstored, (done, "deleted from the camera but never stored", sorted(unstored)[:3],
                          "genuine segments among them:", len(unstored & world.genuine_segments))
    with Store.open(store_root) as store:
        faults = verify_store(store)
    assert faults == [], (done, [str(f) for f in faults])
    return done


def test_fuzz_outbox_mutations_never_lose_or_crash(world, tmp_path):
    rng = random.Random(SEED)
    for iteration in range(ITERATIONS):
        where = tmp_path / f"it-{iteration}"
        where.mkdir()
        try:
            run_one(world, where, rng)
        except AssertionError as exc:
            raise AssertionError(f"seed {SEED}, iteration {iteration}: {exc}") from None
        shutil.rmtree(where, ignore_errors=True)
