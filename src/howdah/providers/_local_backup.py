"""Base backups of local instances (pg_basebackup, tar format compressed with gzip) and new instances restored
from them.

Layout under the provider's home::

    backups/<instance id>/<backup id>/data/         base.tar.gz, pg_wal.tar.gz (the WAL the backup needs) and
                                                    backup_manifest; a backup taken before backups were
                                                    compressed holds the cluster as plain files (still restored)
    backups/<instance id>/<backup id>/backup.json   what it is, and the roles' passwords (0600)
    backups/<instance id>/.<backup id>.partial/     a backup being taken (renamed when complete)
    backups/<instance id>/wal/                      its archived WAL (see :mod:`._local_archive`)

A backup outlives its instance: deleting the instance keeps its backups, so it can be restored later.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tarfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from howdah.pg._binaries import OsUser, run_tool
from howdah.pg.files import write_atomic
from howdah.providers._local_archive import wal_range
from howdah.providers._local_files import InstancePaths, read_secret
from howdah.providers.base import Backup, ProviderError

META = "backup.json"
#: pg_basebackup's compression: gzip is the one method the embedded Postgres binaries are built with (no lz4 or
#: zstd); done by pg_basebackup itself (the server sends plain tar), level 1: most of the size for little CPU.
COMPRESS = "client-gzip:1"
_BASE, _WAL = "base.tar.gz", "pg_wal.tar.gz"


def new_backup_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def load(folder: Path) -> tuple[Backup, dict[str, Any]] | None:
    """The backup in ``folder`` and its metadata, or None when there is no complete backup there."""
    try:
        meta: dict[str, Any] = json.loads((folder / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProviderError(f"the backup metadata {folder / META} is unreadable: {exc}") from exc
    backup = Backup(
        backup_id=str(meta["backup_id"]),
        instance_id=str(meta["instance_id"]),
        location=str(folder),
        size_bytes=int(meta["size_bytes"]),
        created_at=datetime.fromisoformat(str(meta["created_at"])),
    )
    return backup, meta


def take(home: Path, host: str, port: int, paths: InstancePaths, folder: Path, meta: dict[str, Any]) -> Backup:
    """pg_basebackup of the running server at ``host:port`` into ``folder`` (all or nothing; its parent exists),
    as gzip-compressed tar files. The metadata records the backup's WAL range (from its manifest): where replay
    starts and where it is consistent."""
    partial = folder.parent / f".{folder.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    password = read_secret(paths.superuser_password)
    if password is None:
        raise ProviderError(f"instance {meta['instance_id']} has no superuser password file")
    passfile = partial / ".pgpass"  # the password never appears on a command line
    write_atomic(passfile, f"{host}:{port}:*:postgres:{password}\n")
    conninfo = f"host={host} port={port} user=postgres passfile={passfile} application_name=howdah-backup"
    target = str(partial / "data")
    arguments = ["-d", conninfo, "-D", target, "-F", "tar", f"--compress={COMPRESS}", "-X", "stream", "-c", "fast"]
    try:  # as Howdah's own user, not the instance's: the instance's OS user cannot read its backups
        done = run_tool(home, "pg_basebackup", [*arguments, "--no-password"], timeout=24 * 3600, as_server_user=False)
    finally:
        passfile.unlink(missing_ok=True)
    if done.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise ProviderError(f"pg_basebackup failed: {(done.stderr or done.stdout).strip()}")
    size = sum(path.stat().st_size for path in (partial / "data").rglob("*") if path.is_file())
    meta = {**meta, **wal_range(partial / "data"), "size_bytes": size, "created_at": datetime.now(UTC).isoformat(),
            "format": "tar.gz"}  # fmt: skip
    meta["superuser_password"] = password
    meta["app_password"] = read_secret(paths.app_password)
    write_atomic(partial / META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    partial.rename(folder)
    loaded = load(folder)
    assert loaded is not None
    return loaded[0]


def copy_cluster(source: Path, paths: InstancePaths, meta: dict[str, Any], user: OsUser) -> None:
    """Put the backup's cluster in ``paths`` (owned by ``user``, the new instance's): its tar files extracted, or
    the plain files of a backup taken before backups were compressed copied."""
    shutil.rmtree(paths.data_dir, ignore_errors=True)
    taken = source / "data"
    if (taken / _BASE).is_file():
        paths.data_dir.mkdir(mode=0o700)
        _extract(taken / _BASE, paths.data_dir)
        _extract(taken / _WAL, paths.data_dir / "pg_wal")
    else:
        shutil.copytree(taken, paths.data_dir, symlinks=True)
    if not user.is_current:
        for folder, dirs, files in os.walk(paths.data_dir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(folder, name), user.uid, user.gid, follow_symlinks=False)
        user.chown(paths.data_dir)
    paths.data_dir.chmod(0o700)
    # The source's superuser password lets the platform in once; then it, the app role's and the replication
    # role's are replaced (the app and replication passwords are new files: the roles are altered to match).
    write_atomic(paths.superuser_password, str(meta["superuser_password"]) + "\n")
    for stale in (paths.app_password, paths.replication_password, paths.next_superuser_password):
        stale.unlink(missing_ok=True)


def _extract(archive: Path, into: Path) -> None:
    """Unpack one of pg_basebackup's tar files (tarfile's ``data`` filter: no member lands outside ``into``, no
    device files, no links out of it)."""
    into.mkdir(mode=0o700, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(into, filter="data")
    except (OSError, EOFError, zlib.error, tarfile.TarError) as exc:  # a truncated gzip stream is an EOFError
        raise ProviderError(f"the base backup {archive} cannot be unpacked: {exc}") from exc
