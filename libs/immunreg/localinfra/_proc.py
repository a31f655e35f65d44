"""Small process helpers shared by the local PostgreSQL and Kafka launchers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path


def log(message: str) -> None:
    """Progress lines for a person watching `make run`."""
    print(f"[infra] {message}", file=sys.stderr, flush=True)


class StepFailed(RuntimeError):
    """A start-up step failed; the message names the step and the cause."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step} failed: {cause}")
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name what is being done, so a failure says which step it was."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(name, exc) from exc


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
    """Whether a process with this pid is running (a zombie is not).

    A child that exited but was never waited for still answers `kill -0`: reap
    it if it is ours, and read its state from /proc if it is someone else's.
    Without this a stop waits out its whole grace period on a dead broker.
    """
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0  # not our child: its parent reaps it
    if reaped == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def read_pid(pid_file: Path) -> int:
    """The pid a pid file names; 0 when the file is gone (its owner may remove it any time)."""
    try:
        return int(pid_file.read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def stop_pid(pid_file: Path, what: str, seconds: float = 30) -> None:
    """Stop the process named in pid_file: SIGTERM, then SIGKILL after a grace period.

    Returns only once the process is gone.
    """
    pid = read_pid(pid_file)
    if pid and pid_alive(pid):
        log(f"stopping {what} (pid {pid})")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, seconds):
            log(f"{what} (pid {pid}) did not stop within {seconds:.0f}s: killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 10)
    pid_file.unlink(missing_ok=True)


def wait_gone(pid: int, seconds: float) -> bool:
    """Wait until pid is no longer running; False if it still is after `seconds`."""
    deadline = time.monotonic() + seconds
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def wait_ports_free(ports: Sequence[int], seconds: float, host: str = "127.0.0.1") -> list[int]:
    """Wait until nothing listens on any of ports; return those still taken after `seconds`."""
    deadline = time.monotonic() + seconds
    taken = [p for p in ports if port_open(host, p, timeout=0.2)]
    while taken and time.monotonic() < deadline:
        time.sleep(0.1)
        taken = [p for p in taken if port_open(host, p, timeout=0.2)]
    return taken
