"""Ports and postmasters, against real sockets and processes (no Postgres needed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from howdah.pg.processes import LOCALHOST, free_port, pick_port, port_open, port_taken, postmaster_pid
from tests.waiting import wait_until


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_listening_port_is_taken_and_open(listener: int) -> None:
    assert port_taken(LOCALHOST, listener)
    assert port_open(LOCALHOST, listener)


def test_a_bound_port_that_does_not_listen_is_taken_but_not_open() -> None:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        port = int(sock.getsockname()[1])
        assert port_taken(LOCALHOST, port)
        assert not port_open(LOCALHOST, port)


def test_free_port_gives_a_port_nothing_holds() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not port_open(LOCALHOST, port)


def test_pick_port_skips_held_and_reserved_ports(listener: int) -> None:
    assert pick_port(LOCALHOST, (listener, listener), ()) is None
    free = free_port()
    assert pick_port(LOCALHOST, (free, free), [free]) is None
    assert pick_port(LOCALHOST, (free, free), [listener]) == free


def _postgres_named(tmp_path: Path, program: str) -> str:
    """A link named ``postgres`` to ``program``: its processes are called ``postgres``, as a postmaster is."""
    link = tmp_path / "postgres"
    link.symlink_to(shutil.which(program) or f"/bin/{program}")
    return str(link)


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split(" ", 1)[0]


def test_postmaster_pid_of_a_running_postgres(tmp_path: Path) -> None:
    child = subprocess.Popen([_postgres_named(tmp_path, "sleep"), "60"])
    try:
        (tmp_path / "postmaster.pid").write_text(f"{child.pid}\n{tmp_path}\n")
        assert postmaster_pid(tmp_path) == child.pid
    finally:
        child.kill()
        child.wait()
    assert postmaster_pid(tmp_path) is None  # gone and reaped


def test_a_zombie_is_not_a_running_postmaster(tmp_path: Path) -> None:
    child = subprocess.Popen([_postgres_named(tmp_path, "true")])  # exits at once; not reaped yet: a zombie
    try:
        wait_until(lambda: _state(child.pid) == "Z", timeout=10, what="the child to exit")
        (tmp_path / "postmaster.pid").write_text(f"{child.pid}\n")
        assert postmaster_pid(tmp_path) is None
    finally:
        child.wait()


def test_a_reused_pid_that_is_not_postgres_is_not_a_postmaster(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        (tmp_path / "postmaster.pid").write_text(f"{child.pid}\n")
        assert postmaster_pid(tmp_path) is None
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("content", [None, "", "garbage\n", "0\n", "-1\n"])
def test_no_or_a_broken_postmaster_pid_file_is_no_postmaster(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "postmaster.pid").write_text(content)
    assert postmaster_pid(tmp_path) is None
