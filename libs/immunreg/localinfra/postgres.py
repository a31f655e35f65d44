"""A local PostgreSQL server from Debian's packages, initialised into the state folder."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from immunreg.localinfra._proc import apt_install, is_root, log, pid_alive, port_open, run

DATABASE = "immunreg"


async def _data_directory(port: int) -> str | None:
    """The data folder of the PostgreSQL on port, or None if it is not one we can ask."""
    try:
        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        return str(await conn.fetchval("SHOW data_directory"))
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, newest major version first."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


async def reachable(dsn: str, timeout: float = 3.0) -> bool:
    """Whether a PostgreSQL server answers at dsn."""
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@dataclass
class LocalPostgres:
    """PostgreSQL in `<state>/postgres`, listening on 127.0.0.1 only."""

    root: Path
    port: int = 55432

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root; the Debian package creates `postgres`.
        return ["runuser", "-u", "postgres", "--", *cmd] if is_root() else cmd

    def _chown(self, path: Path) -> None:
        if is_root():
            shutil.chown(path, "postgres", "postgres")

    def ensure_installed(self) -> Path:
        """Install Debian's postgresql when initdb is missing; return its bin folder."""
        bin_dir = find_pg_bin()
        if bin_dir is None:
            apt_install("postgresql")
            bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError("postgresql was installed but initdb is still not found")
        return bin_dir

    def start(self) -> str:
        """Initialise (first time) and start the server; return its DSN.

        A server already on the port is used only when it is this folder's own:
        another checkout's must never receive this one's schemas and data.
        """
        if port_open("127.0.0.1", self.port):
            self.check_ours()
            log(f"PostgreSQL already listening on 127.0.0.1:{self.port} (this checkout's)")
            self._create_database()
            return self.dsn
        bin_dir = self.ensure_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        self._chown(self.root)
        reachable_by_owner = (
            subprocess.run(self._as_owner(["test", "-w", str(self.root)]), check=False).returncode
            == 0
        )
        if not reachable_by_owner:
            raise RuntimeError(
                f"PostgreSQL runs as the user postgres, which cannot reach {self.root}: "
                "let it through the folders above (chmod o+x on each), or put the state "
                "elsewhere with IMMUNREG_STATE_DIR"
            )
        if not (self.data_dir / "PG_VERSION").exists():
            log(f"initdb into {self.data_dir}")
            self.data_dir.mkdir(mode=0o700, exist_ok=True)
            self._chown(self.data_dir)
            run(
                self._as_owner(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                )
            )
        options = " ".join(
            [
                "-c listen_addresses=127.0.0.1",
                f"-p {self.port}",
                f"-c unix_socket_directories={self.root}",
                "-c max_connections=400",
                "-c shared_buffers=256MB",
                "-c max_wal_size=2GB",
                "-c fsync=on",
            ]
        )
        log(f"starting PostgreSQL on 127.0.0.1:{self.port}")
        self.logfile.touch()
        self._chown(self.logfile)
        run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.logfile),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            ),
            # Its own session: a terminal's Ctrl-C must not shut the database down
            # under services that are still draining; `stop` does that in order.
            start_new_session=True,
        )
        self._create_database()
        return self.dsn

    def check_ours(self) -> None:
        """Raise, saying what to do, unless the server on the port serves this data folder."""
        serving = asyncio.run(_data_directory(self.port))
        if serving is not None and Path(serving).resolve() == self.data_dir.resolve():
            return
        what = (
            f"a PostgreSQL serving {serving}"
            if serving
            else "a program that is not this checkout's PostgreSQL"
        )
        raise RuntimeError(
            f"port {self.port} is taken by {what}, not by this checkout's ({self.data_dir}). "
            "Stop it (`make stop` in the checkout it belongs to), or run this checkout on "
            "other ports (IMMUNREG_PORT_OFFSET=100, or IMMUNREG_PG_PORT), or name the server "
            "to use with DATABASE_URL."
        )

    def _create_database(self) -> None:
        async def create() -> None:
            admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            conn = await asyncpg.connect(admin, timeout=10)
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
            finally:
                await conn.close()

        asyncio.run(create())

    def stop(self) -> None:
        """Stop the server if this folder's server is running."""
        bin_dir = find_pg_bin()
        if bin_dir is None or not (self.data_dir / "postmaster.pid").exists():
            return
        log("stopping PostgreSQL")
        result = subprocess.run(
            self._as_owner(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "20",
                    "stop",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        # pg_ctl fails when the pid file is stale (the server died): nothing to stop then.
        if result.returncode != 0 and self.running():
            raise RuntimeError(f"pg_ctl stop failed:\n{result.stdout}\n{result.stderr}")

    def running(self) -> bool:
        """Whether this folder's server is running (its postmaster.pid names a live process)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            first_line = pid_file.read_text().splitlines()[0]
        except (OSError, IndexError):
            return False
        return first_line.strip().isdigit() and pid_alive(int(first_line))
