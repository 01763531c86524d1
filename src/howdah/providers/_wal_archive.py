"""Postgres's ``archive_command`` for local instances: push a WAL file into an archive folder. (A restore reads
the copies staged for it with a plain ``cp``: see ``_local_archive.recovery_conf``.)

Run as a script by the server (``python -I <this file> push ARCHIVE %p %f``), so it imports nothing but the
standard library and starts fast for every segment.

Pushing is safe against crashes and retries: the file is written under a temporary name, fsynced, linked to its
final name (which never replaces an existing file) and the folder fsynced, before success is reported. A file
already archived with the same content is success (Postgres retries a push whose answer it did not see); one with
different content is a failure, never overwritten: the archive of a timeline is never rewritten.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path

# A WAL segment, a partial segment, a backup history file or a timeline history file.
WAL_NAME = re.compile(r"^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$")
_CHUNK = 1 << 20


class ArchiveError(Exception):
    """A push or fetch that did not happen (the message says why)."""


def _check_name(name: str) -> None:
    if not WAL_NAME.match(name):
        raise ArchiveError(f"{name!r} is not the name of a WAL file")


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as left, open(b, "rb") as right:
        while True:
            chunk = left.read(_CHUNK)
            if chunk != right.read(_CHUNK):
                return False
            if not chunk:
                return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def push(archive: Path, source: Path, name: str) -> str:
    """Archive ``source`` as ``archive/name``; returns what happened (``archived`` or ``already archived``)."""
    _check_name(name)
    target = archive / name
    if target.exists():
        if _same_content(source, target):
            return "already archived"
        raise ArchiveError(f"{target} exists with different content: refusing to overwrite it")
    temporary = archive / f".{name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temporary, target)  # unlike a rename, never replaces a file another push put there meanwhile
        except FileExistsError:
            if not _same_content(source, target):
                raise ArchiveError(f"{target} exists with different content: refusing to overwrite it") from None
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_folder(archive)
    return "archived"


def main(argv: list[str]) -> int:
    """``push ARCHIVE PATH NAME``: 0 on success, 1 otherwise."""
    if len(argv) != 4 or argv[0] != "push":
        print("usage: push ARCHIVE PATH NAME", file=sys.stderr)
        return 2
    try:
        push(Path(argv[1]), Path(argv[2]), argv[3])
    except (ArchiveError, OSError) as exc:
        print(f"howdah WAL push: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
