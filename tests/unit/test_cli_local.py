"""The running ``howdah up``'s pid file: private, this process and its API's address; one of a process that is
gone (or exited and not yet reaped) is not taken for a running platform."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from howdah.cli._local import pid_path, read_pid_file, remove_pid_file, running_up, write_pid_file


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOWDAH_HOME", str(tmp_path))
    return tmp_path


def test_the_pid_file_is_private_and_names_this_process(home: Path) -> None:
    path = write_pid_file("http://127.0.0.1:8123")
    assert path == pid_path() and oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    found = running_up()
    assert found is not None and found.api_url == "http://127.0.0.1:8123"
    remove_pid_file()
    assert not path.exists() and running_up() is None


def test_a_gone_or_unreaped_process_is_not_running(home: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    write_pid_file("http://127.0.0.1:8123")
    pid_path().write_text(f"{child.pid}\nhttp://127.0.0.1:8123\n")
    # exited but not reaped yet: a zombie, which signal 0 still reaches
    assert _exited(child.pid)
    assert read_pid_file() is not None and running_up() is None
    child.wait(timeout=10)
    assert running_up() is None
    remove_pid_file()  # not this process's: left alone
    assert pid_path().exists()


def _exited(pid: int) -> bool:
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # waits for the exit, leaves the zombie
    return info is not None
