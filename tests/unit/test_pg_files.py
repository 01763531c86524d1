"""Files of Postgres servers: atomic private writes, locks, configuration files, reachability by the server user."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from howdah.pg._binaries import OsUser
from howdah.pg.files import (
    file_lock,
    first_closed_folder,
    include_conf,
    quote_conf_value,
    unquote_conf_value,
    write_atomic,
    write_conf,
)


def test_write_atomic_replaces_the_file_privately_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("old")
    write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "record"
    target.write_text("old")
    with pytest.raises(FileNotFoundError):
        write_atomic(target, "new", owner_of=tmp_path / "missing")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record"]


def test_file_lock_excludes_other_holders_until_released(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "one.lock"

    def try_lock() -> bool:
        with open(path, "a") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(other, fcntl.LOCK_UN)
            return True

    with file_lock(path):
        assert not try_lock()
    assert try_lock()


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("64MB", "'64MB'"), ("it's", "'it''s'"), ("C:\\tmp", "'C:\\\\tmp'"), ("", "''"), ("'a', \"b\"", "'''a'', \"b\"'")],
)
def test_values_are_quoted_as_alter_system_writes_them_and_read_back(value: str, quoted: str) -> None:
    assert quote_conf_value(value) == quoted
    assert unquote_conf_value(quoted) == value


def test_write_conf_and_include_it_once(tmp_path: Path) -> None:
    main = tmp_path / "postgresql.conf"
    main.write_text("shared_buffers = 128MB\n")
    write_conf(tmp_path / "extra.conf", {"port": "5433", "cluster_name": "o'neil"}, header="# ours\n")
    include_conf(tmp_path, "extra.conf")
    include_conf(tmp_path, "extra.conf")
    assert (tmp_path / "extra.conf").read_text() == "# ours\nport = '5433'\ncluster_name = 'o''neil'\n"
    text = main.read_text()
    assert text.startswith("shared_buffers = 128MB\n")
    assert text.count("include_if_exists = 'extra.conf'") == 1


def test_the_current_user_reaches_everything(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    assert first_closed_folder(closed, OsUser.current()) is None


def test_the_first_folder_another_user_cannot_pass_is_named() -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    other = OsUser("someone-else", os.geteuid() + 54321, os.getegid() + 54321)
    root = Path(tempfile.mkdtemp(prefix="howdah-files-"))
    try:
        root.chmod(0o755)
        if first_closed_folder(root, other) is not None:
            pytest.skip(f"the temporary folder {root} is closed to other users")
        closed = root / "open" / "closed"
        closed.mkdir(parents=True, mode=0o700)
        (root / "open").chmod(0o755)
        assert first_closed_folder(closed / "inside", other) == closed
        os.chown(closed, other.uid, other.gid)  # its own folder: passable however closed to others
        assert first_closed_folder(closed, other) is None
    finally:
        shutil.rmtree(root)
