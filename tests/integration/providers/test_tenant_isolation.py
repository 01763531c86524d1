"""A hostile tenant against the local provider: the platform's superuser sessions in a database the tenant owns
must never run the tenant's objects (CVE-2018-1058 class), and the tenant never becomes superuser."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from howdah.providers import ConnectionInfo, ProviderError
from howdah.providers.local import LocalProvider

pytestmark = pytest.mark.slow

# Every planted object calls this: it records who ran it, and makes ``app`` a superuser when it can.
TRAP = """
CREATE SCHEMA evil;
CREATE TABLE evil.ran (runner text, superuser bool, at timestamptz DEFAULT now());
GRANT ALL ON SCHEMA evil TO PUBLIC;
GRANT ALL ON evil.ran TO PUBLIC;
CREATE FUNCTION evil.escalate() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO evil.ran (runner, superuser)
        SELECT current_user, rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user;
    IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE app SUPERUSER';
    END IF;
    RETURN true;
END $$;
-- a view shadowing the catalog view the platform reads before CREATE EXTENSION
CREATE VIEW evil.pg_available_extensions AS
    SELECT * FROM pg_catalog.pg_available_extensions WHERE evil.escalate();
CREATE VIEW evil.pg_available_extension_versions AS
    SELECT * FROM pg_catalog.pg_available_extension_versions WHERE evil.escalate();
CREATE VIEW evil.pg_namespace AS SELECT * FROM pg_catalog.pg_namespace WHERE evil.escalate();
CREATE VIEW evil.pg_extension AS SELECT * FROM pg_catalog.pg_extension WHERE evil.escalate();
CREATE VIEW evil.pg_roles AS SELECT * FROM pg_catalog.pg_roles WHERE evil.escalate();
-- functions shadowing built-ins with the very same signatures
CREATE FUNCTION evil.current_setting(text) RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN evil.escalate() THEN pg_catalog.current_setting($1) END $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN evil.escalate() THEN pg_catalog.current_setting($1, $2) END $$;
CREATE FUNCTION evil.version() RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN evil.escalate() THEN pg_catalog.version() END $$;
-- an operator shadowing text = text and name = text
CREATE FUNCTION evil.texteq(text, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.escalate() AND pg_catalog.texteq($1, $2) $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION evil.nameeqtext(name, text) RETURNS boolean LANGUAGE sql
    AS $$ SELECT evil.escalate() AND pg_catalog.nameeqtext($1, $2) $$;
CREATE OPERATOR evil.= (LEFTARG = name, RIGHTARG = text, FUNCTION = evil.nameeqtext);
-- and the same in public, the schema extensions used to land in
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE sql
    AS $$ SELECT CASE WHEN evil.escalate() THEN pg_catalog.current_setting($1) END $$;
"""

# How the tenant puts its objects first in the platform's sessions.
SEARCH_PATHS = {
    "database": "ALTER DATABASE app SET search_path = evil, pg_catalog, public",
    "role": "ALTER ROLE app SET search_path = evil, pg_catalog, public",
    "role_in_database": "ALTER ROLE app IN DATABASE app SET search_path = evil, pg_catalog, public",
}


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    home = Path(tempfile.mkdtemp(prefix="howdah-tenant-", dir="/tmp"))
    os.chmod(home, 0o755)
    local = LocalProvider(home, durable=False)
    try:
        yield local
    finally:
        for instance_id in local.list_instances():
            local.delete(instance_id)
        shutil.rmtree(home, ignore_errors=True)


def connect(info: ConnectionInfo, **overrides: Any) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(**{**info.as_dict(), **overrides}, connect_timeout=5, autocommit=True)


def up(provider: LocalProvider, instance_id: str) -> ConnectionInfo:
    provider.ensure_created(instance_id, instance_id, {})
    provider.ensure_running(instance_id)
    return provider.ensure_app_database(instance_id)


def superuser_runs(info: ConnectionInfo) -> list[tuple[Any, ...]]:
    with connect(info) as conn:
        return conn.execute("SELECT runner, superuser FROM evil.ran WHERE superuser").fetchall()


def is_superuser(info: ConnectionInfo) -> bool:
    with connect(info) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'app'").fetchone()
        assert row is not None
        return bool(row[0])


@pytest.mark.parametrize("how", sorted(SEARCH_PATHS))
def test_planted_objects_never_run_as_superuser(provider: LocalProvider, how: str) -> None:
    instance_id = f"hostile-{how.replace('_', '-')}"
    info = up(provider, instance_id)
    with connect(info) as conn:
        conn.execute(TRAP)
        conn.execute(SEARCH_PATHS[how])
    with connect(info) as conn:  # the trap works: the tenant's new sessions resolve the shadowing objects
        conn.execute("SELECT count(*) FROM pg_available_extensions")
        row = conn.execute("SELECT count(*) FROM evil.ran WHERE runner = 'app'").fetchone()
        assert row is not None and row[0] >= 1

    # every operation of the platform on the instance, with extensions enabled, changed and dropped
    for _ in range(2):
        provider.ensure_extensions(instance_id, ["pg_trgm", "citext"], [])
    provider.ensure_app_database(instance_id)
    provider.apply_settings(instance_id, {"work_mem": "8MB"})
    provider.status(instance_id)
    provider.restart(instance_id)
    provider.ensure_extensions(instance_id, ["pg_trgm"], ["citext"])

    assert superuser_runs(info) == []
    assert not is_superuser(info)
    with connect(info) as conn:
        # the extension landed in the schema the platform chose, which the tenant cannot write to
        row = conn.execute(
            """
            SELECT n.nspname, pg_catalog.pg_get_userbyid(n.nspowner),
                   pg_catalog.has_schema_privilege('app', n.oid, 'CREATE')
            FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
            WHERE e.extname = 'pg_trgm'
            """
        ).fetchone()
        assert row == ("extensions", "postgres", False)
        assert conn.execute("SELECT extensions.similarity('howdah', 'howdy') > 0").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'citext'").fetchone() == (0,)
        # COPY ... FROM PROGRAM stays a superuser's (or pg_execute_server_program's) privilege
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY evil.ran (runner) FROM PROGRAM 'id -un'")


def test_extensions_are_usable_unqualified_by_default(provider: LocalProvider) -> None:
    info = up(provider, "plain")
    provider.ensure_extensions("plain", ["pg_trgm"], [])
    with connect(info) as conn:  # a new session: the database's search_path includes the extensions schema
        assert conn.execute("SELECT similarity('howdah', 'howdy') > 0").fetchone() == (True,)
        conn.execute("CREATE TABLE t (v text)")
        conn.execute("CREATE INDEX ON t USING gin (v gin_trgm_ops)")


def test_a_schema_the_tenant_planted_under_the_platforms_name_is_refused(provider: LocalProvider) -> None:
    info = up(provider, "squatter")
    with connect(info) as conn:
        conn.execute(TRAP)
        conn.execute("CREATE SCHEMA extensions")
        conn.execute("CREATE OPERATOR extensions.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq)")
    with pytest.raises(ProviderError, match=r"schema \"extensions\" .*owned by app"):
        provider.ensure_extensions("squatter", ["pg_trgm"], [])
    assert superuser_runs(info) == []
    assert not is_superuser(info)
    with connect(info) as conn:
        assert conn.execute("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'pg_trgm'").fetchone() == (0,)


def test_platform_sessions_pin_their_search_path(provider: LocalProvider) -> None:
    up(provider, "pinned")
    paths = provider._paths("pinned")
    record = provider._created_record(paths)
    for dbname in ("postgres", "app"):
        with provider._server(paths, record).connect(dbname) as conn:
            assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog,pg_temp",)


# ------------------------------------------------------------------------------------------ OS isolation
def superuser_connect(provider: LocalProvider, instance_id: str) -> psycopg.Connection[tuple[Any, ...]]:
    info = provider.ensure_app_database(instance_id)
    password = (provider.home / "instances" / instance_id / "superuser.password").read_text().strip()
    return connect(info, user="postgres", password=password)


def process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


@pytest.mark.skipif(os.geteuid() != 0, reason="per-instance OS users need root (see the README's security section)")
def test_each_instance_runs_as_its_own_os_user_and_cannot_read_the_others(
    provider: LocalProvider, pg_cluster: Any
) -> None:
    up(provider, "tenant-a")
    up(provider, "tenant-b")
    provider.ensure_replicas("tenant-b", 2)
    uids = {}
    for instance_id in ("tenant-a", "tenant-b"):
        with superuser_connect(provider, instance_id) as conn:
            row = conn.execute("SELECT pg_catalog.pg_backend_pid()").fetchone()
            assert row is not None
            uids[instance_id] = process_uid(int(row[0]))
    shared = pwd.getpwnam("howdah").pw_uid
    assert len({*uids.values(), 0, shared}) == 4, uids  # two users of their own: neither root nor the shared one
    names = {instance_id: pwd.getpwuid(uid).pw_name for instance_id, uid in uids.items()}
    replica_pid = int((provider.home / "instances/tenant-b/replica-1/pgdata/postmaster.pid").read_text().split()[0])
    assert process_uid(replica_pid) == uids["tenant-b"]

    # a superuser of tenant-a (COPY … PROGRAM, pg_read_file) reaches nothing of tenant-b's, nor the control plane's
    victim = provider.home / "instances" / "tenant-b"
    control_plane = pg_cluster.server.data_dir if pg_cluster.server else None
    targets = [victim / "pgdata" / "PG_VERSION", victim / "server.log", victim / "superuser.password"]
    targets += [victim / "replica-1" / "pgdata" / "PG_VERSION"]
    if control_plane is not None:
        targets.append(Path(control_plane) / "PG_VERSION")
    with superuser_connect(provider, "tenant-a") as conn:
        conn.execute("CREATE TEMP TABLE loot (line text)")
        for target in targets:
            with pytest.raises(psycopg.Error, match=r"Permission denied|could not open file"), conn.transaction():
                conn.execute("SELECT pg_catalog.pg_read_file(%s)", (str(target),))
            with conn.transaction():
                conn.execute(f"COPY loot FROM PROGRAM 'cat {target} 2>/dev/null || true'")
        assert conn.execute("SELECT count(*) FROM loot").fetchone() == (0,)
        with conn.transaction():
            conn.execute(f"COPY loot FROM PROGRAM 'ls {provider.home / 'instances'} 2>/dev/null || true'")
        assert conn.execute("SELECT count(*) FROM loot").fetchone() == (0,)  # instances/ cannot be listed

    # and no file Howdah writes is readable (or its folder passable) by other users
    for path in [provider.home / "instances", *victim.rglob("*")]:
        if path.is_symlink() or not path.exists():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if path == provider.home / "instances":
            assert mode & 0o007 == 0o001, oct(mode)  # passable, not listable
        else:
            assert mode & 0o007 == 0, f"{path} is {oct(mode)}"
    assert stat.S_IMODE((victim / "server.log").stat().st_mode) == 0o600

    # deleting an instance removes its OS user
    provider.delete("tenant-a")
    with pytest.raises(KeyError):
        pwd.getpwnam(names["tenant-a"])
    pwd.getpwnam(names["tenant-b"])
