"""The files a running ``howdah up`` keeps under ``$HOWDAH_HOME``: its pid file (which process, which API
address) and its log file. Both private: the folders 0700, the files 0600."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from howdah.pg import howdah_home
from howdah.pg.files import write_atomic

RUN_DIR, LOG_DIR = "state", "logs"  # "run" is the embedded server's socket folder
PID_FILE, LOG_FILE = "up.pid", "howdah.log"


def _private_dir(name: str) -> Path:
    folder = howdah_home() / name
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)  # also when an earlier version made it with other rights
    return folder


def pid_path() -> Path:
    return howdah_home() / RUN_DIR / PID_FILE


def log_path() -> Path:
    return howdah_home() / LOG_DIR / LOG_FILE


@dataclass(frozen=True)
class Running:
    """What a pid file says: the ``howdah up`` process and the address of the API it serves."""

    pid: int
    api_url: str


def write_pid_file(api_url: str) -> Path:
    """Record this process as the running ``howdah up`` (mode 0600, replaced all at once)."""
    _private_dir(RUN_DIR)
    path = pid_path()
    write_atomic(path, f"{os.getpid()}\n{api_url}\n")
    return path


def remove_pid_file() -> None:
    """Remove the pid file if it is this process's (a newer ``up`` may have replaced it)."""
    found = read_pid_file()
    if found is not None and found.pid == os.getpid():
        pid_path().unlink(missing_ok=True)


def read_pid_file() -> Running | None:
    """The pid file's record, or None when there is none or it is not one."""
    try:
        pid, url = pid_path().read_text().split("\n")[:2]
        return Running(int(pid), url.strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (owned by anyone); one that exited but was not yet reaped (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: existing is all that can be told
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def running_up() -> Running | None:
    """The ``howdah up`` of this ``$HOWDAH_HOME`` when its process still runs; a stale pid file is ignored."""
    found = read_pid_file()
    return found if found is not None and alive(found.pid) else None


def log_to_file() -> Path:
    """Send every log record (uvicorn's, the services') to the log file instead of the terminal."""
    _private_dir(LOG_DIR)
    path = log_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    os.close(fd)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        with contextlib.suppress(Exception):
            old.close()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    for chatty in ("uvicorn.access", "httpx", "httpcore"):  # one line per request is too many
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return path
