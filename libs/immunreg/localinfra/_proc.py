"""Small process helpers shared by the local PostgreSQL and Kafka launchers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def log(message: str) -> None:
    """Progress lines for a person watching `make run`."""
    print(f"[infra] {message}", file=sys.stderr, flush=True)


def run(cmd: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its output when it fails."""
    result = subprocess.run(list(cmd), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result  # type: ignore[no-any-return]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, seconds: float, what: str, logfile: Path) -> None:
    """Wait until host:port accepts connections, or fail with the tail of the log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        time.sleep(0.25)
    tail = logfile.read_text(errors="replace")[-4000:] if logfile.exists() else "(no log)"
    raise RuntimeError(f"{what} did not open {host}:{port} within {seconds:.0f}s:\n{tail}")


def is_root() -> bool:
    """Whether this process runs as root (PostgreSQL then runs as `postgres`)."""
    return os.geteuid() == 0


def apt_install(*packages: str) -> None:
    """Install Debian packages; used only when a tool the project needs is missing."""
    prefix: list[str] = [] if is_root() else ["sudo", "-n"]
    if not is_root() and shutil.which("sudo") is None:
        raise RuntimeError(f"need {packages} installed and cannot apt-get without root")
    log(f"installing {' '.join(packages)} from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run([*prefix, "apt-get", "update", "-q"], env=env)
    run([*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (and is not a zombie of ours)."""
    # A server this process started and that has exited stays a zombie until it
    # is reaped, and signal 0 still reaches a zombie: stopping it would then wait
    # out the whole grace period (60 s for Kafka) for a process already gone.
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(pid_file: Path) -> int:
    """The pid a pid file names; 0 when the file is gone (its owner may remove it any time)."""
    try:
        return int(pid_file.read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def stop_pid(pid_file: Path, what: str, seconds: float = 30) -> None:
    """Stop the process named in pid_file: SIGTERM, then SIGKILL after a grace period."""
    pid = read_pid(pid_file)
    if pid and pid_alive(pid):
        log(f"stopping {what} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + seconds
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
