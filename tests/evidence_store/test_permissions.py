"""Permissions of the documented deployment: an admin (root) creates the store in a setgid group
folder, and the expiry service runs as another user who is only a member of that group."""

import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import pytest

from evidence_store.store import Store
from evidence_store.verify import verify_store
from tests.clipfactory import DeviceFixture, make_clip
from tests.clock import FakeClock
from tests.evidence_store.conftest import PASSPHRASE, TEST_LOG_N, local_only, put_and_ingest

#: An unprivileged uid/gid pair no account uses: the expiry service (uid) in the store's group.
EXPIRE_UID, STORE_GID = 64123, 64124
REPO = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="needs root (to chown the folder and drop to another uid) and setpriv")


def _distributions(name: str) -> list[metadata.Distribution]:
    """The installed distribution ``name`` and everything it requires (extras left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [name]
    while todo:
        key = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(key)
        except metadata.PackageNotFoundError:
            continue  # a requirement whose platform marker leaves it out here
        found[key] = dist
        todo += [re.match(r"[A-Za-z0-9._-]+", req).group() for req in dist.requires or []
                 if "extra ==" not in req]
    return list(found.values())


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)  # same file system: instant, and the file keeps its 0644
    except OSError:
        shutil.copy2(src, dest)


@pytest.fixture(scope="module")
def reachable_project():
    """The project as another user can reach it, wherever this checkout lives: the checkout (and
    its virtual environment's site-packages) may sit in a 0700 home folder that the dropped uid
    cannot enter. A world-readable temporary folder gets a copy of ``evidence_store`` (which
    imports nothing else of ours) and the installed distributions it requires; yields the
    interpreter and the PYTHONPATH for it."""
    base = Path(tempfile.mkdtemp(prefix="bodycam-perm-py-"))
    try:
        shutil.copytree(REPO / "evidence_store", base / "src" / "evidence_store",
                        ignore=shutil.ignore_patterns("__pycache__"))
        site = base / "site"
        for dist in _distributions("bodycam"):
            if dist.metadata["Name"] == "bodycam":
                continue  # this checkout itself: the copy above
            for file in dist.files or []:
                src = Path(dist.locate_file(file))
                if ".." in file.parts or not src.is_file():
                    continue  # console scripts outside site-packages, files already removed
                _link_or_copy(src, site / file)
        for folder, _, _ in os.walk(base):
            os.chmod(folder, 0o755)
        # The base interpreter, not the venv's launcher: the venv may be unreachable too.
        python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
        pythonpath = f"{base / 'src'}{os.pathsep}{site}"
        probe = _as_other_user(python, pythonpath, "-c", "import evidence_store.cli")
        if probe.returncode != 0:
            pytest.skip(f"another user cannot run {python} with the project: {probe.stderr.strip()[-200:]}")
        yield python, pythonpath
    finally:
        shutil.rmtree(base)


def _as_other_user(python: str, pythonpath: str, *argv: str) -> subprocess.CompletedProcess:
    """Run ``python ARGV`` as EXPIRE_UID, whose only group is STORE_GID."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": pythonpath,
           "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"}
    return subprocess.run(
        ["setpriv", f"--reuid={EXPIRE_UID}", f"--regid={STORE_GID}", "--clear-groups", "--inh-caps=-all",
         python, *argv], capture_output=True, text=True, env=env, cwd="/", timeout=120)


def as_group_member(project: tuple[str, str], folder: Path, *argv: str) -> subprocess.CompletedProcess:
    """Run bodycam-evidence as EXPIRE_UID, whose only group is STORE_GID."""
    python, pythonpath = project
    return _as_other_user(python, pythonpath, "-m", "evidence_store.cli", "--store", str(folder), *argv)


def store_with_due_clip(folder: Path):
    """Created by root (the admin runs init, a dock ingests) with a clock 15 days back, so that the
    expiry service, running on the real clock, finds the clip past its deadline."""
    clock = FakeClock(datetime.now(UTC) - timedelta(days=15))
    store = Store.init(folder, PASSPHRASE, scrypt_log_n=TEST_LOG_N, clock=clock, actor="admin")
    cam = DeviceFixture.new("cam-07")
    store.enroll(cam.device_id, cam.public_key)
    clip = make_clip(folder.parent / "outbox", cam, store.recipients, started_at=clock.now() - timedelta(hours=1))
    put_and_ingest(store, clip)
    store.close()
    return clip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def group_folder():
    """``install -d -o root -g bodycam-store -m 2770`` inside a base folder others may traverse
    (pytest's tmp_path is 0700 to root, which would hide the store from the dropped user)."""
    base = Path(tempfile.mkdtemp(prefix="bodycam-perm-"))
    os.chmod(base, 0o755)
    folder = base / "store"
    folder.mkdir()
    os.chown(folder, 0, STORE_GID)
    os.chmod(folder, 0o2770)
    yield folder
    shutil.rmtree(base)


@local_only
def test_store_init_files_are_group_accessible_objects_read_only(tmp_path):
    store = Store.init(tmp_path / "s", PASSPHRASE, scrypt_log_n=TEST_LOG_N, actor="admin")
    try:
        store.put_object(io.BytesIO(b"ciphertext"), 100)
        assert mode(store.root / "log.key") == 0o640
        assert mode(store.root / "identity.age") == 0o640
        assert mode(store.root / "evidence.db") == 0o660
        assert mode(store.root / "evidence.db-wal") == 0o660  # SQLite copies the database's mode
        for folder in (store.root, store.root / "objects", store.root / "tmp",
                       *(store.root / "objects").iterdir()):
            assert mode(folder) == 0o2770, folder
        (obj,) = store.objects.names()
        assert mode(store.objects.path(obj)) == 0o440
    finally:
        store.close()


@needs_root
@local_only
def test_store_expire_as_group_member_other_uid_deletes_and_log_verifies(group_folder, reachable_project):
    clip = store_with_due_clip(group_folder)
    store = Store.open(group_folder)
    segment = store.segments(clip.clip_id)[0]["sha256"]
    store.close()
    assert os.stat(group_folder / "evidence.db").st_gid == STORE_GID  # setgid folder: group inherited

    # The expiry service: another uid whose only group is the store's.
    proc = as_group_member(reachable_project, group_folder, "expire")
    assert proc.returncode == 0, proc.stderr
    assert "deleted 1" in proc.stdout and "Traceback" not in proc.stderr

    store = Store.open(group_folder)
    try:
        assert store.clip(clip.clip_id).state == "expired"
        assert not store.objects.exists(segment)
        (expire,) = [e for e in store.events() if e["kind"] == "expire"]
        assert expire["actor"] == f"uid-{EXPIRE_UID}"
        assert verify_store(store) == []
    finally:
        store.close()


@needs_root
@local_only
def test_cli_expire_database_not_group_writable_one_line_read_only(group_folder, reachable_project):
    # A store whose database lost group write (an old store, a wrong chmod): a clear line, no traceback.
    clip = store_with_due_clip(group_folder)
    os.chmod(group_folder / "evidence.db", 0o640)
    proc = as_group_member(reachable_project, group_folder, "expire")
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("bodycam-evidence: error: cannot "), proc.stderr
    assert "readonly" in lines[0] and lines[1].startswith("hint: commands that write run as a member")
    assert "Traceback" not in proc.stderr
    with Store.open(group_folder) as store:
        assert store.clip(clip.clip_id).state == "stored"  # nothing changed
