"""A throwaway PostgreSQL server for the fault drill: its own data folder and port, on
127.0.0.1 only, so that the drill can stop it under a worker without touching the test
server of `.ci/postgres.sh` (or anyone else's).

Needs Debian's postgresql binaries (/usr/lib/postgresql/*/bin) and, when run as root, the
`postgres` user to own the server's files.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PASSWORD = "drill-secret-2f9c"  # what the secrets case looks for in every file and line


def binaries() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """initdb + pg_ctl in ``folder``; ``url(db)`` for the role `drill` with PASSWORD."""

    def __init__(self, folder: Path) -> None:
        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql")
        self.folder = folder
        self.data = folder / "pgdata"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
        # createdb reads the password from the environment, never from its arguments
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PGPASSWORD": PASSWORD})

    def init(self) -> PrivatePostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        pwfile = self.folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "drill", "--auth=scram-sha-256",
                  f"--pwfile={pwfile}")
        pwfile.unlink()
        self.start()
        return self

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.folder}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w",
                  "-o", opts, "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_db(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "drill", name)
        return self.url(name)

    def url(self, db: str, password: str | None = PASSWORD) -> str:
        auth = f"drill:{password}" if password is not None else "drill"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        try:
            self.stop()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        time.sleep(0.1)

