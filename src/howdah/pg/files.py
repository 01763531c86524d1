"""The files Howdah's Postgres servers live by: private atomic writes, locks, configuration files, and whether a
server's OS user can reach a folder.

Shared by the embedded server (:mod:`howdah.pg`) and the local provider's instances.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from howdah.pg._binaries import OsUser

__all__ = [
    "file_lock",
    "first_closed_folder",
    "include_conf",
    "quote_conf_value",
    "unquote_conf_value",
    "write_atomic",
    "write_conf",
]


def write_atomic(path: Path, text: str, *, mode: int = 0o600, owner_of: Path | None = None) -> None:
    """Replace ``path`` with ``text`` all at once (write a sibling, fsync, rename), private to its owner: the
    current user, or (``owner_of``) the owner of that folder, e.g. a data directory's server user."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if owner_of is not None:
            st = owner_of.stat()
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between threads and processes (``flock`` on ``path``, created with its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def first_closed_folder(path: Path, user: OsUser) -> Path | None:
    """The first folder on the way down to ``path`` (itself included) that ``user`` may not pass through —
    neither its own nor open to others — or None when it can reach ``path`` (always, for the current user)."""
    if user.is_current:
        return None
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid != user.uid and not st.st_mode & 0o001:
            return folder
    return None


# ---------------------------------------------------------------------------------------- configuration
def quote_conf_value(value: str) -> str:
    """``value`` as a quoted configuration-file literal, escaped as ALTER SYSTEM writes it (``'`` and ``\\``
    doubled), so that Postgres reads back exactly ``value``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def unquote_conf_value(raw: str) -> str:
    """The value of a quoted configuration-file literal (``'it''s'`` → ``it's``; backslash escapes undone)."""
    out, i = [], 1
    while i < len(raw) - 1:
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw) - 1:
            out.append(raw[i + 1])
            i += 2
        elif ch == "'" and raw[i + 1 : i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def write_conf(path: Path, values: Mapping[str, str], *, header: str = "") -> None:
    """A configuration file of ``name = 'value'`` lines (every value quoted), after the comment lines in
    ``header``; written at once, owned (0600) like the folder it is in (a data directory: its server's user)."""
    text = header + "".join(f"{name} = {quote_conf_value(value)}\n" for name, value in values.items())
    write_atomic(path, text, owner_of=path.parent)


def include_conf(data_dir: Path, name: str) -> None:
    """Make ``postgresql.conf`` of ``data_dir`` include the file ``name`` next to it at its end (if it exists),
    so its settings win over what precedes them (``postgresql.auto.conf``, read last, still wins over them)."""
    line = f"include_if_exists = {quote_conf_value(name)}"
    main = data_dir / "postgresql.conf"
    current = main.read_text()
    if line not in current:
        write_atomic(main, current.rstrip("\n") + f"\n\n# Howdah\n{line}\n", owner_of=data_dir)
