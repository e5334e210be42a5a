"""A throwaway PostgreSQL cluster for tests: Debian's ``postgresql`` package, ``initdb`` and
``pg_ctl`` in a private temp folder, run as an unprivileged user, on a Unix socket only.

    server = PostgresServer.start()        # ready in 1-2 s
    url = server.create_database()         # postgresql://bodycam@/db-...?host=/tmp/...&port=5432
    env = server.env()                     # PGPASSFILE: the password, by libpq's own convention
    server.stop()

No TCP port is opened (``listen_addresses = ''``), so two runs cannot collide: each socket sits in
its own folder. Password authentication (SCRAM) is on even for the socket, so a test can present
wrong credentials and see them refused; the right password reaches clients through a password
file (``PGPASSFILE``), never a URL or a command line, the way the store is meant to be configured.

Run ``python -m tests.servers.postgres`` to start one by hand; it prints the URL and waits.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.servers._process import (
    Reaper,
    RunAs,
    ServerUnavailable,
    chown_tree,
    missing_programs,
    pid_alive,
    private_folder,
    run,
    stop_pid,
    unprivileged_user,
)

#: Debian packages this fixture needs (for the project's set-up).
PACKAGES = "postgresql"
SUPERUSER = "bodycam"
PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside the private folder


def bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl, or None."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        version = re.search(r"/(\d+)/bin$", path)
        if version and os.access(os.path.join(path, "initdb"), os.X_OK):
            found.append((int(version.group(1)), Path(path)))
    return max(found)[1] if found else None


@dataclass
class PostgresServer:
    folder: Path
    bin: Path
    owner: RunAs
    password: str
    user: str = SUPERUSER
    port: int = PORT
    _databases: int = field(default=0, repr=False)
    _reaper: Reaper | None = field(default=None, repr=False)

    # -- life cycle -------------------------------------------------------------------------------

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresServer:
        """Create and start a cluster; ServerUnavailable (with the reason) if it cannot start.

        ``durable=False`` turns fsync off: the tests kill clients, never this server, and a
        throwaway cluster need not survive a power cut. Benchmarks pass ``durable=True``."""
        pg_bin = bin_dir()
        reason = missing_programs([str(pg_bin / "initdb"), str(pg_bin / "pg_ctl")] if pg_bin else ["initdb"], PACKAGES)
        if reason:
            raise ServerUnavailable(reason)
        # PostgreSQL refuses to run as root; Debian's package made the system user "postgres".
        owner = unprivileged_user(("postgres",))
        folder = private_folder("bodycam-pg-", owner)
        server = cls(folder=folder, bin=pg_bin, owner=owner, password=secrets.token_urlsafe(18),
                     _reaper=Reaper(folder))
        try:
            server._init(durable)
            server._start()
            # pg_ctl's postmaster is not our child: if this process dies, the reaper stops it.
            server._reaper.watch(server._postmaster_pid(), signal.SIGINT)
        except BaseException:
            server.stop()
            raise
        return server

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def passfile(self) -> Path:
        """libpq password file (0600, owned by the test's user, who runs the clients)."""
        return self.folder / "pgpass"

    def _server_env(self) -> dict:
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.folder), "LANG": "C.UTF-8", "TZ": "UTC"}

    def _init(self, durable: bool) -> None:
        pwfile = self.folder / "initdb.pw"
        pwfile.write_text(self.password + "\n")
        chown_tree(pwfile, self.owner)
        run([str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}",
             "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "--encoding=UTF8",
             "--locale=C.UTF-8", "--no-sync"], cwd=self.folder, env=self._server_env(), owner=self.owner)
        pwfile.unlink()
        settings = [
            "listen_addresses = ''",
            f"unix_socket_directories = '{self.folder}'",
            f"port = {self.port}",
            "max_connections = 200",
            "logging_collector = off",
            "log_min_messages = warning",
        ]
        if not durable:
            settings += ["fsync = off", "full_page_writes = off"]
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write("\n# bodycam test fixture\n" + "\n".join(settings) + "\n")
        self.passfile.write_text(f"*:*:*:{self.user}:{self.password}\n")
        os.chmod(self.passfile, 0o600)  # libpq ignores a password file others can read

    def _start(self) -> None:
        run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
             "-w", "-t", "60", "start"], cwd=self.folder, env=self._server_env(), owner=self.owner, timeout=90)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the cluster (fast shutdown), wait for the postmaster to exit, remove the folder."""
        pid = self._postmaster_pid()
        if pid is not None and pid_alive(pid):
            try:
                run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"],
                    cwd=self.folder, env=self._server_env(), owner=self.owner, timeout=90)
            except ServerUnavailable:
                pass
            stop_pid(pid)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.release()

    # -- for tests --------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Variables a libpq client needs besides the URL: the password file."""
        return {"PGPASSFILE": str(self.passfile)}

    def url(self, dbname: str = "postgres", user: str | None = None) -> str:
        """A libpq URL without password: ``postgresql://USER@/DB?host=SOCKETDIR&port=PORT``."""
        return (f"postgresql://{quote(user or self.user)}@/{quote(dbname)}"
                f"?host={quote(str(self.folder), safe='/')}&port={self.port}")

    def conninfo(self, dbname: str = "postgres", user: str | None = None) -> str:
        """The same as ``url`` in libpq's key=value form."""
        return f"host={self.folder} port={self.port} user={user or self.user} dbname={dbname}"

    def _client_env(self) -> dict:
        return {**os.environ, "PGPASSFILE": str(self.passfile), "PGHOST": str(self.folder),
                "PGPORT": str(self.port), "PGUSER": self.user}

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL with psql (stop at the first error); returns its unaligned output."""
        return run([str(self.bin / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At", "-d", dbname, "-c", sql],
                   cwd=self.folder, env=self._client_env())

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (named ``db-N-random`` unless given); returns its URL."""
        if name is None:
            self._databases += 1
            name = f"db-{self._databases}-{secrets.token_hex(3)}"
        run([str(self.bin / "createdb"), name], cwd=self.folder, env=self._client_env())
        return self.url(name)

    def create_role(self, name: str, password: str) -> None:
        """A login role (for tests of a less privileged user or of a wrong password)."""
        self.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'")


def main() -> int:
    import time

    try:
        server = PostgresServer.start()
    except ServerUnavailable as exc:
        print(f"cannot start PostgreSQL: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"url:        {server.url()}\nPGPASSFILE: {server.passfile}\nlog:        {server.folder / 'server.log'}")
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
