"""Ports and postmasters: which TCP ports are free, whether a data directory's server runs, and ``pg_ctl``.

Shared by the embedded server (:mod:`howdah.pg`) and the local provider's instances.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

from howdah.pg._binaries import OsUser, run_tool, server_os_user

__all__ = [
    "LOCALHOST",
    "free_port",
    "pg_ctl_start",
    "pg_ctl_stop",
    "pick_port",
    "port_open",
    "port_taken",
    "postmaster_pid",
]

LOCALHOST = "127.0.0.1"
# pg_ctl waits ``-t`` seconds itself; the process gets this much longer before it is given up on.
_PG_CTL_GRACE = 15


# ------------------------------------------------------------------------------------------------- ports
def free_port(host: str = LOCALHOST) -> int:
    """A TCP port on ``host`` that is free right now (the system's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on (or holds) ``host:port``, so that a server could not bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pick_port(host: str, port_range: tuple[int, int], reserved: Iterable[int]) -> int | None:
    """A port in ``port_range`` (inclusive) that is not ``reserved`` and nothing holds on ``host`` (a random
    start, then in order), or None when there is none."""
    low, high = port_range
    taken = set(reserved)
    span = high - low + 1
    start = random.randrange(span)
    for step in range(span):
        port = low + (start + step) % span
        if port not in taken and not port_taken(host, port):
            return port
    return None


# ----------------------------------------------------------------------------------------------- process
def postmaster_pid(data_dir: Path) -> int | None:
    """The postmaster's pid from ``data_dir/postmaster.pid`` when that process is alive (a zombie, or a reused
    pid that is not a ``postgres``, is not)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, IndexError, ValueError):
        return None
    if pid <= 0:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: fall back to signal 0
        return pid if _signal_reaches(pid) else None
    comm = stat[stat.find("(") + 1 : stat.rfind(")")]
    state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
    if state in ("Z", "X") or comm != "postgres":
        return None
    return pid


def _signal_reaches(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


# -------------------------------------------------------------------------------------------------- pg_ctl
def pg_ctl_start(
    tools: Path, data_dir: Path, log_file: Path, *, timeout: float, user: OsUser | None = None
) -> subprocess.CompletedProcess[str]:
    """``pg_ctl start -w`` as ``user`` (default: the server user; ``tools``: where the binaries are cached),
    logging to ``log_file`` (made private to ``user`` first: it holds every client's statements and errors).
    Returns what pg_ctl printed, whatever its exit code."""
    user = user or server_os_user()
    log_file.touch(mode=0o600, exist_ok=True)
    log_file.chmod(0o600)
    user.chown(log_file)
    return _pg_ctl(tools, user, ["-D", str(data_dir), "-l", str(log_file)], "start", timeout)


def pg_ctl_stop(
    tools: Path, data_dir: Path, mode: str = "fast", *, timeout: float, user: OsUser | None = None
) -> subprocess.CompletedProcess[str]:
    """``pg_ctl stop -w -m mode`` (smart, fast or immediate) as ``user`` (default: the server user). Returns
    what pg_ctl printed, whatever its exit code."""
    return _pg_ctl(tools, user or server_os_user(), ["-D", str(data_dir), "-m", mode], "stop", timeout)


def _pg_ctl(
    tools: Path, user: OsUser, args: list[str], action: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    wait = max(1, int(timeout))
    return run_tool(tools, "pg_ctl", [*args, "-w", "-t", str(wait), action], timeout=wait + _PG_CTL_GRACE, user=user)
