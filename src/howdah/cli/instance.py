"""``howdah instance`` and ``howdah apply``: managed Postgres from the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from howdah.cli._api import WAIT_SECONDS, Api, ApiSettings
from howdah.cli._common import EXIT_NOT_READY, EXIT_USAGE, console, err_console, fail, friendly
from howdah.cli._completion import InstanceName, complete_instance
from howdah.cli._output import Format, JsonFlag, OutputOption, chosen, emit
from howdah.cli._refs import NoMatch, resolve
from howdah.cli._tables import backups_table, fields_table, instances_table

app = typer.Typer(help="Create and manage Postgres instances through the control-plane API.", no_args_is_help=True)

Wait = Annotated[bool, typer.Option("--wait", help="Wait until the data plane has finished.")]
Configs = Annotated[list[str] | None, typer.Option("--config", help="A Postgres setting, name=value; repeatable.")]
Extensions = Annotated[
    list[str] | None, typer.Option("--extension", help="Enable an extension (or 'name=off' to disable); repeatable.")
]


def _api() -> Api:
    return Api(ApiSettings.load())


def _patience(wait: bool) -> float | None:
    """How long a request waits out 409/503 + Retry-After: ``--wait``'s bound, or not at all."""
    return WAIT_SECONDS if wait else None


def _configs(pairs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise fail(f"--config takes name=value, not {pair!r}", EXIT_USAGE)
        out[name.strip()] = value.strip()
    return out


def _extensions(names: list[str] | None) -> list[dict[str, Any]]:
    out = []
    for item in names or []:
        name, _, flag = item.partition("=")
        out.append({"name": name.strip(), "enabled": flag.strip().lower() not in ("off", "false", "0", "no")})
    return out


def _show(item: dict[str, Any], output: Format = Format.table) -> None:
    """One instance: the API's record as JSON or YAML, or its facts as lines for people."""
    emit(item, output, lambda: fields_table(_facts(item), f"instance {item['name']}"))


def _facts(item: dict[str, Any]) -> list[tuple[str, str]]:
    spec = item["desired_spec"]
    rows = [
        ("id", item["id"]), ("state", item["state"]), ("data plane", item["data_plane"]),
        ("stack", spec["stack"]), ("size", f"{spec['cpu']} cpu, {spec['memory']} memory, {spec['storage']} storage"),
        ("replicas", str(spec["replicas"])),
        ("extensions", ", ".join(e["name"] for e in spec["extensions"] if e["enabled"]) or "-"),
        ("postgres_configs", json.dumps(spec["postgres_configs"]) if spec["postgres_configs"] else "-"),
    ]  # fmt: skip
    status = item.get("status") or {}
    if status.get("archiving") is not None:
        span = status.get("recovery_window")
        archived = f"recoverable {span['earliest']} to {span['latest']}" if span else "no base backup yet"
        if status.get("archiving") is False:
            archived = "WAL archiving off"
        if status.get("last_archive_error"):
            archived += f"; [red]{status['last_archive_error']}[/]"
        rows.append(("backups", archived))
    verified = status.get("last_verified_restore")
    if verified:
        rows.append(("verified restore", _verification(verified)))
    if item.get("connection"):
        c = item["connection"]
        rows.append(("connection", f"{c.get('user')}@{c.get('host')}:{c.get('port')}/{c.get('dbname')}"))
    for replica in (item.get("status") or {}).get("replicas") or []:  # as each provider reports them
        up = replica.get("running", replica.get("ready"))
        parts = ["running" if up else "[red]not running[/]", replica.get("role") or "", replica.get("state") or ""]
        if replica.get("port") is not None:
            parts.append(f"port {replica['port']}")
        if "lag_bytes" in replica:
            parts.append("lag -" if replica["lag_bytes"] is None else f"lag {replica['lag_bytes']} bytes")
        rows.append((str(replica.get("name", "replica")), ", ".join(p for p in parts if p)))
    if item.get("last_error"):
        rows.append(("last error", f"[red]{item['last_error']}[/]"))
    return [(key, str(value)) for key, value in rows]


@app.command()
@friendly
def create(
    name: str,
    stack: str = typer.Option("standard", help="standard, oltp, olap, vectordb or messagequeue."),
    cpu: str = typer.Option("1"),
    memory: str = typer.Option("1Gi"),
    storage: str = typer.Option("10Gi"),
    replicas: int = typer.Option(1, min=1, max=5),
    config: Configs = None,
    extension: Extensions = None,
    data_plane: str | None = typer.Option(None, help="Where to place it (default: the only data plane)."),
    wait: Wait = False,
    output: OutputOption = Format.table,
) -> None:
    """Create an instance."""
    api = _api()
    body: dict[str, Any] = {
        "name": name, "stack": stack, "cpu": cpu, "memory": memory, "storage": storage, "replicas": replicas,
        "postgres_configs": _configs(config), "extensions": _extensions(extension),
    }  # fmt: skip
    if data_plane:
        body["data_plane"] = data_plane
    item = api.call("POST", api.instances, json=body, retry_for=_patience(wait))
    err_console.print(f"instance {name} accepted ({item['state']})")
    _show(api.wait(item["id"]) if wait else item, output)


@app.command("list")
@friendly
def list_(
    state: str | None = typer.Option(None, help="Only instances in this state."),
    all_: bool = typer.Option(False, "--all", "-a", help="Deleted instances too."),
    output: OutputOption = Format.table,
    as_json: JsonFlag = False,
) -> None:
    """The org's instances (not the deleted ones, unless --all or --state Deleted); ids as their shortest unique
    prefix, which every command taking an instance accepts."""
    items = _api().list_instances(state)
    if not all_ and state != "Deleted":
        items = [item for item in items if item["state"] != "Deleted"]
    emit(items, chosen(output, as_json), lambda: instances_table(items, datetime.now(UTC)))


@app.command()
@friendly
def get(name: InstanceName, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """One instance, by name, id or unique id prefix."""
    _show(_api().find(name), chosen(output, as_json))


@app.command()
@friendly
def update(
    name: InstanceName,
    cpu: str | None = typer.Option(None),
    memory: str | None = typer.Option(None),
    storage: str | None = typer.Option(None),
    replicas: int | None = typer.Option(None, min=1, max=5),
    config: Configs = None,
    extension: Extensions = None,
    wait: Wait = False,
    output: OutputOption = Format.table,
) -> None:
    """Change an instance (settings merge into the current ones)."""
    api = _api()
    item = api.find(name)
    spec = item["desired_spec"]
    changes: dict[str, Any] = {
        k: v
        for k, v in (("cpu", cpu), ("memory", memory), ("storage", storage), ("replicas", replicas))
        if v is not None
    }
    if config:
        changes["postgres_configs"] = {**spec["postgres_configs"], **_configs(config)}
    if extension:
        current = {e["name"]: e for e in spec["extensions"]}
        current.update({e["name"]: e for e in _extensions(extension)})
        changes["extensions"] = list(current.values())
    if not changes:
        raise fail(
            "nothing to change: pass --cpu, --memory, --storage, --replicas, --config or --extension", EXIT_USAGE
        )
    updated = api.call("PATCH", f"{api.instances}/{item['id']}", json=changes, retry_for=_patience(wait))
    err_console.print(f"update accepted: {updated['state']}")
    _show(api.wait(item["id"]) if wait else updated, output)


def _lifecycle(action: str, name: str, wait: bool, output: Format) -> None:
    api = _api()
    item = api.find(name)
    if action == "delete":
        done = api.call("DELETE", f"{api.instances}/{item['id']}", retry_for=_patience(wait))
    else:
        done = api.call("POST", f"{api.instances}/{item['id']}/{action}", retry_for=_patience(wait))
    err_console.print(f"{action} accepted: {done['state']}")
    if wait:
        done = api.wait(item["id"])
        err_console.print(f"{done['name']} is {done['state']}")
    if output is not Format.table:
        emit(done, output, lambda: None)


@app.command()
@friendly
def restart(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Restart an instance."""
    _lifecycle("restart", name, wait, output)


@app.command()
@friendly
def stop(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Stop an instance (its data is kept)."""
    _lifecycle("stop", name, wait, output)


@app.command()
@friendly
def start(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Start a stopped instance."""
    _lifecycle("start", name, wait, output)


@app.command()
@friendly
def delete(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Delete an instance and its data."""
    _lifecycle("delete", name, wait, output)


@app.command()
@friendly
def backup(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Take a base backup of a running instance (prints the backup's full id, or its record with -o)."""
    api = _api()
    item = api.find(name)
    taken = api.call("POST", f"{api.instances}/{item['id']}/backups", retry_for=_patience(wait))
    if wait:
        deadline = time.monotonic() + 600
        while taken["status"] == "pending":
            if time.monotonic() > deadline:
                raise fail(f"backup {taken['id']} is still pending after 600s", EXIT_NOT_READY)
            time.sleep(0.5)
            found = [b for b in api.call("GET", f"{api.instances}/{item['id']}/backups") if b["id"] == taken["id"]]
            taken = found[0] if found else taken
        if taken["status"] == "failed":
            raise fail(f"backup {taken['id']} failed: {taken['error']}")
    if output is Format.table:
        typer.echo(taken["id"])  # whole, for scripts and for restore
    else:
        emit(taken, output, lambda: None)


RestoreNames = Annotated[
    list[str],
    typer.Argument(metavar="[BACKUP_ID] NEW_NAME", help="A backup id and the new name, or with --from the new name."),
]
FromOption = Annotated[
    str | None,
    typer.Option("--from", help="The instance to restore (name or id; deleted too).", autocompletion=complete_instance),
]
ToTime = Annotated[str | None, typer.Option("--to-time", help="A time with its zone: '2026-12-05 10:00:00+00'.")]
ToLsn = Annotated[str | None, typer.Option("--to-lsn", help="An LSN: '0/3000060'.")]
Latest = Annotated[bool, typer.Option("--latest", help="The latest point archived.")]


def _source(api: Api, ref: str) -> dict[str, Any]:
    """An instance by name, id or unique id prefix; by the name of a deleted one too (the newest of that name)
    when no live one has the name."""
    try:
        return api.find(ref)
    except NoMatch:
        gone = [item for item in api.list_instances("Deleted") if item["name"] == ref]
        if not gone:
            raise NoMatch(f"no instance named {ref!r} in org {api.settings.org!r}, not even a deleted one") from None
        return max(gone, key=lambda item: item["created_at"] or "")


@app.command()
@friendly
def backups(name: InstanceName, output: OutputOption = Format.table, as_json: JsonFlag = False) -> None:
    """An instance's recoverable window and base backups (a deleted instance's too); ids as their shortest unique
    prefix, which ``restore`` accepts."""
    api = _api()
    item = _source(api, name)
    status = item.get("status") or {}
    listed = api.call("GET", f"/api/v1/orgs/{api.settings.org}/backups", params={"instance_id": item["id"]})
    facts = {key: status.get(key) for key in ("recovery_window", "archiving", "last_archived_wal",
                                              "last_archived_at", "last_archive_error")}  # fmt: skip
    output = chosen(output, as_json)
    if output is not Format.table:
        emit({"instance_id": item["id"], "name": item["name"], **facts, "backups": listed}, output, lambda: None)
        return
    span = facts["recovery_window"]
    if span:
        console.print(f"recoverable from {span['earliest']} (LSN {span['earliest_lsn']}) "
                      f"to {span['latest']} (LSN {span['latest_lsn']})")  # fmt: skip
    else:
        console.print("no recoverable window yet: take a base backup (howdah instance backup NAME)")
    if facts["archiving"] is False:
        console.print("WAL archiving is off: only the moments of base backups can be restored")
    if facts["last_archived_wal"]:
        console.print(f"last archived WAL {facts['last_archived_wal']} at {facts['last_archived_at']}")
    if facts["last_archive_error"]:
        console.print(f"[red]archiving fails: {facts['last_archive_error']}[/]")
    console.print(f"backups of {item['name']} ({item['id']}):", highlight=False)
    console.print(backups_table(listed, datetime.now(UTC)))


@app.command("delete-backup")
@friendly
def delete_backup(backup_id: str, output: OutputOption = Format.table) -> None:
    """Delete a base backup (id or unique id prefix) and the archived WAL no other backup needs; refused, saying
    why, when that would lose a point of the window its instance's retention keeps."""
    api = _api()
    taken = api.call("GET", f"/api/v1/orgs/{api.settings.org}/backups")
    found = resolve(backup_id, taken, what="backup")
    gone = api.call("DELETE", f"/api/v1/orgs/{api.settings.org}/backups/{quote(found['id'], safe='')}")
    err_console.print(f"backup {gone['id']} deleted", highlight=False)
    if output is not Format.table:
        emit(gone, output, lambda: None)


def _verification(outcome: dict[str, Any]) -> str:
    if outcome.get("ok"):
        return f"ok at {outcome.get('at')} ({outcome.get('seconds')}s)"
    return f"[red]failed at {outcome.get('at')} ({outcome.get('seconds')}s): {outcome.get('error')}[/]"


@app.command("verify-backup")
@friendly
def verify_backup(name: InstanceName, wait: Wait = False, output: OutputOption = Format.table) -> None:
    """Restore the instance's latest backup (with its archived WAL) into a scratch instance, check that it starts
    and answers a query, and delete it; with --wait, print the outcome (exit code 1 when the restore failed)."""
    api = _api()
    item = _source(api, name)
    before = (item.get("status") or {}).get("last_verified_restore")
    api.call("POST", f"{api.instances}/{item['id']}/verify-backup", retry_for=_patience(wait))
    err_console.print(f"verifying the latest backup of {item['name']}", highlight=False)
    if not wait:
        return
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        outcome = (api.call("GET", f"{api.instances}/{item['id']}").get("status") or {}).get("last_verified_restore")
        if outcome and outcome != before:
            break
        if time.monotonic() > deadline:
            raise fail(f"no verification outcome after {WAIT_SECONDS:g}s", EXIT_NOT_READY)
        time.sleep(1)
    emit(outcome, output, lambda: fields_table([("verified restore", _verification(outcome))], item["name"]))
    if not outcome.get("ok"):
        raise typer.Exit(1)


@app.command()
@friendly
def restore(
    names: RestoreNames,
    source: FromOption = None,
    to_time: ToTime = None,
    to_lsn: ToLsn = None,
    latest: Latest = False,
    wait: Wait = False,
    output: OutputOption = Format.table,
) -> None:
    """Create a new instance from a completed backup (BACKUP_ID NEW_NAME), or as another instance was at a point in
    time (--from SRC with --to-time, --to-lsn or --latest, and NEW_NAME)."""
    api = _api()
    if source is None:
        if len(names) != 2 or to_time or to_lsn or latest:
            raise fail(
                "give BACKUP_ID NEW_NAME, or --from SRC with --to-time, --to-lsn or --latest and NEW_NAME", EXIT_USAGE
            )
        taken = api.call("GET", f"/api/v1/orgs/{api.settings.org}/backups")
        body: dict[str, Any] = {"backup_id": resolve(names[0], taken, what="backup")["id"], "name": names[1]}
    else:
        if len(names) != 1 or [bool(to_time), bool(to_lsn), latest].count(True) != 1:
            raise fail("with --from give NEW_NAME and exactly one of --to-time, --to-lsn or --latest", EXIT_USAGE)
        body = {"source_instance_id": _source(api, source)["id"], "name": names[0]}
        if to_time:
            try:
                at = datetime.fromisoformat(to_time.strip())
            except ValueError:
                raise fail(f"--to-time {to_time!r} is not a time like '2026-12-05 10:00:00+00'", EXIT_USAGE) from None
            if at.tzinfo is None:
                raise fail(f"--to-time {to_time!r} has no time zone: add one, e.g. '+00'", EXIT_USAGE)
            body["target_time"] = at.isoformat()
        if to_lsn:
            body["target_lsn"] = to_lsn.strip()
    item = api.call("POST", f"/api/v1/orgs/{api.settings.org}/restore", json=body, retry_for=_patience(wait))
    err_console.print(f"restore into {body['name']} accepted ({item['state']})")
    _show(api.wait(item["id"]) if wait else item, output)


@app.command()
@friendly
def connect(
    name: InstanceName, print_uri: bool = typer.Option(False, "--print", help="Print the URI instead.")
) -> None:
    """Open psql on the instance (or print its connection URI)."""
    item = _api().find(name)
    c = item.get("connection")
    if not c or not c.get("password"):
        raise fail(f"{name} has no connection details for this token yet (state {item['state']})")
    psql = shutil.which("psql")
    if print_uri or psql is None:
        typer.echo(_uri(c, with_password=True))
        return
    with tempfile.TemporaryDirectory(prefix="howdah-pgpass-") as folder:  # private (0700), removed afterwards
        argv, env = psql_invocation(psql, c, Path(folder) / "pgpass")
        inherited = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}  # it would win over the passfile
        code = subprocess.call(argv, env={**inherited, **env})
    raise typer.Exit(code)


def _uri(c: dict[str, Any], *, with_password: bool) -> str:
    secret = f":{quote(c['password'], safe='')}" if with_password else ""
    return (
        f"postgresql://{quote(c['user'], safe='')}{secret}@{c['host']}:{c['port']}/"
        f"{quote(c.get('dbname') or 'postgres', safe='')}"
    )


def psql_invocation(psql: str, connection: dict[str, Any], passfile: Path) -> tuple[list[str], dict[str, str]]:
    """psql's argv and extra environment: the password goes into ``passfile`` (written here, mode 0600), never
    onto the command line, which every user of the machine can read (``ps``)."""
    secret = connection["password"].replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"*:*:*:*:{secret}\n")  # this file serves this one psql only
    return [psql, _uri(connection, with_password=False)], {"PGPASSFILE": str(passfile)}


# ------------------------------------------------------------------------------------------------- apply
def load_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """``howdah.toml``: one table per instance, keyed by its name, with the spec's fields (like tembo.toml).

    ``extensions`` may be a list of names or a table of name = true/false.
    """
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise fail(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"{path} is not valid TOML: {exc}") from None
    manifest: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise fail(f"{path}: [{name}] must be a table of instance settings")
        spec = {k: v for k, v in table.items() if k != "name"}
        extensions = spec.get("extensions")
        if isinstance(extensions, dict):
            spec["extensions"] = [{"name": k, "enabled": bool(v)} for k, v in extensions.items()]
        elif isinstance(extensions, list):
            spec["extensions"] = [e if isinstance(e, dict) else {"name": str(e)} for e in extensions]
        if "postgres_configs" in spec:
            spec["postgres_configs"] = {k: str(v) for k, v in spec["postgres_configs"].items()}
        manifest[name] = spec
    return manifest


def diff(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields of ``wanted`` whose value differs from ``current`` (extensions compared by name and flag)."""
    changes = {}
    for key, value in wanted.items():
        if key == "data_plane":
            continue
        have = current.get(key)
        if key == "extensions":
            norm = {e["name"]: e.get("enabled", True) for e in value}
            have_norm = {e["name"]: e.get("enabled", True) for e in have or []}
            if norm != have_norm:
                changes[key] = (have, value)
        elif have != value:
            changes[key] = (have, value)
    return changes


@friendly
def apply(
    file: Annotated[Path, typer.Option("-f", "--file", help="The manifest.")] = Path("howdah.toml"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until every instance is Up."),
) -> None:
    """Create or update instances to match a manifest, showing the changes it applies."""
    api = _api()
    manifest = load_manifest(file)
    touched = []
    for name, spec in manifest.items():
        current = api.find_or_none(name)
        if current is None:
            item = api.call("POST", api.instances, json={"name": name, **spec}, retry_for=_patience(wait))
            console.print(f"[green]+ create[/] {name}: {json.dumps(spec)}")
            touched.append(item["id"])
            continue
        changes = diff(current["desired_spec"], spec)
        if not changes:
            console.print(f"= {name}: up to date")
            continue
        table = Table(title=f"~ update {name}")
        for column in ("field", "now", "wanted"):
            table.add_column(column)
        for key, (have, want) in changes.items():
            table.add_row(key, json.dumps(have), json.dumps(want))
        console.print(table)
        patch = {k: v for k, (_, v) in changes.items()}
        api.call("PATCH", f"{api.instances}/{current['id']}", json=patch, retry_for=_patience(wait))
        touched.append(current["id"])
    if wait:
        for instance_id in touched:
            done = api.wait(instance_id)
            console.print(f"{done['name']}: {done['state']}")
