"""What every real-server fixture needs: a private folder, free ports, an unprivileged user,
daemons started and stopped by their own PIDs, and a reaper for a test run that dies.

``stop`` sends SIGTERM to each PID it started, waits for that PID to exit (a daemon that is
still exiting deletes the pid file and socket of a successor in the same folder), and only then
removes the folder. If the test process dies without stopping them (SIGKILL, a crash), the
``Reaper`` child notices its pipe closing and does the same, so nothing outlives the run.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: When set to 1, a server that cannot start fails the test instead of skipping it (for CI, whose
#: set-up installed the packages: a skip there would hide a broken fixture).
REQUIRE_ENV = "BODYCAM_REQUIRE_SERVERS"


class ServerUnavailable(Exception):
    """The server cannot start here; the message says why (shown as the skip reason)."""


def required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def missing_programs(paths: list[str], packages: str) -> str | None:
    """A skip reason naming the Debian packages if any of ``paths`` is not an executable file."""
    absent = [p for p in paths if not (shutil.which(p) or (os.path.isfile(p) and os.access(p, os.X_OK)))]
    if absent:
        return f"{', '.join(absent)} not installed (Debian: apt-get install {packages})"
    return None


@dataclass(frozen=True)
class RunAs:
    """The user a server runs as: ``None`` fields mean "the current user"."""

    name: str
    uid: int | None
    gid: int | None

    def popen_args(self) -> dict:
        if self.uid is None:
            return {}
        # extra_groups=[] drops root's supplementary groups as well.
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def current_user() -> RunAs:
    return RunAs(pwd.getpwuid(os.geteuid()).pw_name, None, None)


def unprivileged_user(preferred: tuple[str, ...]) -> RunAs:
    """The current user when it is not root; as root, the first of ``preferred`` that exists
    (a system user made by the server's own Debian package), else ``nobody``."""
    if os.geteuid() != 0:
        return current_user()
    for name in (*preferred, "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return RunAs(name, entry.pw_uid, entry.pw_gid)
    raise ServerUnavailable(f"running as root and none of the users {', '.join(preferred)}, nobody exists")


def _reachable_by_others(folder: Path) -> bool:
    """True if every folder from / down to ``folder`` lets other users pass (o+x)."""
    for part in [folder, *folder.parents]:
        try:
            if not part.stat().st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def private_folder(prefix: str, owner: RunAs) -> Path:
    """A fresh folder (mode 0700) owned by ``owner`` in a place that user can reach.

    The checkout, and pytest's own temp folder (/tmp/pytest-of-root is 0700), may be closed to
    other users; a server that drops root must still reach its folder, so the parent is the first
    of $TMPDIR, /tmp, /var/tmp, /dev/shm that every user can pass through. Names stay short:
    Unix socket paths are limited to 107 bytes."""
    candidates = [os.environ.get("TMPDIR"), tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm"]
    for candidate in candidates:
        if candidate and os.path.isdir(candidate) and (owner.uid is None or _reachable_by_others(Path(candidate))):
            folder = Path(tempfile.mkdtemp(prefix=prefix, dir=candidate))
            break
    else:
        raise ServerUnavailable(f"no temp folder that user {owner.name} can reach (tried {', '.join(filter(None, candidates))})")
    if owner.uid is not None:
        os.chown(folder, owner.uid, owner.gid)
    os.chmod(folder, 0o700)
    return folder


def chown_tree(path: Path, owner: RunAs) -> None:
    if owner.uid is None:
        return
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), owner.uid, owner.gid)
    os.lchown(path, owner.uid, owner.gid)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all sockets are held open until every port is chosen."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as gone once reaped; reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM ``pid`` and wait until it has exited; SIGKILL after ``timeout`` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + 10
        time.sleep(0.05)


def run(args: list[str], *, cwd: Path, env: dict | None = None, owner: RunAs | None = None,
        timeout: float = 120, input: bytes | None = None) -> str:
    """Run a set-up command in ``cwd`` (the server's folder: the test's own working folder may be
    closed to ``owner``, and initdb refuses to start where it cannot read its working folder);
    ServerUnavailable with its last output lines if it fails."""
    try:
        done = subprocess.run(args, cwd=cwd, env=env, input=input, capture_output=True, timeout=timeout,
                              **(owner.popen_args() if owner else {}))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerUnavailable(f"{Path(args[0]).name} failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        raise ServerUnavailable(f"{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(args[:3]))} "
                                f"exited {done.returncode}: {' / '.join(output[-3:])}")
    return done.stdout.decode(errors="replace")


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(text[-lines:])


# The reaper: a small child process that cleans up after a test process that died without
# stopping its servers (SIGKILL, a crash, Ctrl-C twice). It reads "PID SIGNAL" lines from a pipe
# whose write end only the test process holds; end of file without a final "done" line means the
# test process is gone, so it signals each PID, waits for it to exit, and removes the folder.
# pg_ctl's postmaster is not our child, and a Ceph daemon would otherwise outlive a killed run.
_REAPER = r"""
import os, shutil, signal, sys, time
folder, pids, done = sys.argv[1], [], False
for line in sys.stdin:
    if line.strip() == "done":
        done = True
        break
    pid, sig = line.split()
    pids.append((int(pid), int(sig)))
if not done:
    for pid, sig in reversed(pids):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    shutil.rmtree(folder, ignore_errors=True)
"""


class Reaper:
    """Cleans up ``folder`` and the registered PIDs if the test process dies first."""

    def __init__(self, folder: Path):
        import sys

        self._proc = subprocess.Popen([sys.executable, "-c", _REAPER, str(folder)], stdin=subprocess.PIPE,
                                      cwd="/", start_new_session=True)

    def watch(self, pid: int, sig: int = signal.SIGTERM) -> None:
        self._proc.stdin.write(f"{pid} {int(sig)}\n".encode())
        self._proc.stdin.flush()

    def release(self) -> None:
        """The servers were stopped in order: tell the reaper to exit without acting."""
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write(b"done\n")
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
            self._proc.wait()
