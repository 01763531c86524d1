"""The conductor's durable workflows: one per CRUD event, at most one active per instance.

Each provider call is a checkpointed step, so a conductor killed at any point resumes where it stopped, and
every call is idempotent, so a step that was interrupted and runs again converges instead of duplicating.
Transient provider failures are retried with backoff; a failure that remains ends the workflow with an
``Error`` state event carrying the provider's message (Postgres's own), its classification (permanent or
transient, :mod:`howdah.control.failures`: the reconciler re-drives only transient ones) and the status observed
after it, so that a server that failed to start is never reported running.

An instance's password is sealed (:mod:`howdah.control.sealing`) inside the step that receives it from the
provider: step results and state events carry only ``password_sealed``, opened in memory where it is used.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from howdah.control import stacks
from howdah.control.events import STATE_QUEUE, BackupKind, StateKind
from howdah.control.failures import classify
from howdah.control.sealing import Sealer, default_sealer, open_connection, seal_connection
from howdah.control.spec import InstanceSpec
from howdah.durable import DurableApp, RetryPolicy, StepFailed, WorkflowContext
from howdah.pg.migrations import upgrade
from howdah.providers import Backup, Provider, ProviderError, TransientProviderError
from howdah.queue import COMPONENT as QUEUE

ANSWERS: dict[str, StateKind] = {
    "Create": "Created", "Update": "Updated", "Restart": "Restarted", "Stop": "Stopped", "Start": "Started",
    "Delete": "Deleted",
}  # fmt: skip
PROVIDER_RETRY = RetryPolicy(max_attempts=6, initial_delay=0.5, max_delay=10.0, retry_on=(TransientProviderError,))


COMPONENTS = {QUEUE.name: QUEUE}


def install_components(connection: dict[str, Any], names: list[str]) -> list[str]:
    """Install (or upgrade) Howdah components into the instance's app database, as its owner; idempotent."""
    unknown = sorted(set(names) - set(COMPONENTS))
    if unknown:
        raise ProviderError(f"unknown component(s) to install: {unknown}")
    applied: list[str] = []
    with psycopg.connect(
        host=connection["host"], port=connection["port"], user=connection["user"], password=connection["password"],
        dbname=connection["dbname"], autocommit=True, connect_timeout=10,
    ) as conn:  # fmt: skip
        for name in names:
            applied += [f"{m.component} {m.version:04d}" for m in upgrade(conn, COMPONENTS[name])]
    return applied


def _backup_dict(backup: Backup) -> dict[str, Any]:
    return {"backup_id": backup.backup_id, "instance_id": backup.instance_id, "location": backup.location,
            "size_bytes": backup.size_bytes, "created_at": backup.created_at.isoformat()}  # fmt: skip


def _restore(provider: Provider, source: dict[str, Any], instance_id: str, name: str) -> None:
    restore = getattr(provider, "restore", None)
    if restore is None:
        raise ProviderError(f"the {provider.name} provider cannot restore backups")
    backup = Backup(source["backup_id"], source["instance_id"], source["location"], int(source.get("size_bytes") or 0),
                    datetime.now(UTC))  # fmt: skip
    restore(backup, instance_id, name)


def _shape_kwargs(provider: Provider, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec=`` for providers that size instances themselves (kubernetes: resources, replicas, pooler)."""
    if "spec" in inspect.signature(provider.ensure_created).parameters:
        return {"spec": InstanceSpec.model_validate(spec)}
    return {}


def build_app(
    provider: Provider, data_plane: str, dsn: str | None = None, *, lease: int = 30,
    provider_retry: RetryPolicy = PROVIDER_RETRY, sealer: Sealer | None = None,
) -> DurableApp:  # fmt: skip
    """The DurableApp whose workflows carry out one data plane's CRUD events through ``provider``;
    ``provider_retry``: how each provider call is retried within a run; ``sealer``: how instance passwords are
    sealed (default :func:`~howdah.control.sealing.default_sealer`; the control plane must use the same)."""
    app = DurableApp(dsn, queue=f"dp_{data_plane.replace('-', '_')}_wf", lease=lease)
    sealer = sealer or default_sealer()

    def app_database(iid: str) -> dict[str, Any]:
        """The app role's connection, its password sealed before it becomes a step result."""
        return seal_connection(provider.ensure_app_database(iid).as_dict(), sealer, iid)

    def step(ctx: WorkflowContext, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        return ctx.step(name, fn, *args, retry=provider_retry)

    async def report(ctx: WorkflowContext, event: dict[str, Any], kind: StateKind | BackupKind, **fields: Any) -> None:
        body = {"instance_id": event["instance_id"], "event": kind, "generation": event["generation"],
                "data_plane": data_plane, **fields}  # fmt: skip

        async def send() -> int:
            return await app.queue.send(STATE_QUEUE, body)

        await ctx.step(f"report {kind}", send)

    async def run(ctx: WorkflowContext, event: dict[str, Any], body: Callable[[], Any]) -> str:
        try:
            fields = await body()
        except StepFailed as exc:
            message = exc.error.get("message", str(exc))
            try:  # what the failure left behind (best effort: the report matters more)
                status: dict[str, Any] | None = await observed(ctx, event["instance_id"], "status after the error")
            except StepFailed:
                status = None
            await report(ctx, event, "Error", error=message, failure=classify(exc.error.get("type")),
                         **({} if status is None else {"status": status}))  # fmt: skip
            return f"Error: {message}"
        kind = fields.pop("kind", ANSWERS[event["kind"]])
        await report(ctx, event, kind, **fields)
        return str(kind)

    async def observed(ctx: WorkflowContext, iid: str, name: str = "status") -> dict[str, Any]:
        return dict(await step(ctx, name, lambda: provider.status(iid).as_dict()))

    async def take_backup(ctx: WorkflowContext, event: dict[str, Any]) -> str:
        """Not a state change: the outcome goes to control.backups (BackupCompleted / BackupFailed)."""
        backup_id = event.get("backup_id")
        take = getattr(provider, "backup", None)
        if take is None:
            await report(ctx, event, "BackupFailed", backup={"backup_id": backup_id},
                         error=f"the {provider.name} provider does not take backups")  # fmt: skip
            return "BackupFailed"
        try:
            done = await step(ctx, "backup", lambda: _backup_dict(take(event["instance_id"], backup_id)))
        except StepFailed as exc:
            await report(ctx, event, "BackupFailed", backup={"backup_id": backup_id},
                         error=exc.error.get("message", str(exc)))  # fmt: skip
            return "BackupFailed"
        await report(ctx, event, "BackupCompleted", backup=done)
        return "BackupCompleted"

    @app.workflow(name="instance_event", key="instance_id", on_conflict="queue")
    async def instance_event(ctx: WorkflowContext, event: dict[str, Any]) -> str:
        iid, kind = event["instance_id"], event["kind"]
        settings: dict[str, str] = event.get("settings", {})
        wanted: list[str] = event.get("extensions", [])

        async def converge() -> dict[str, Any]:
            """Create or update until the instance matches the event (both are the same idempotent path)."""
            shape = _shape_kwargs(provider, event["spec"])
            source = event.get("restore_from")
            if source:  # a new instance from a backup: its data, then the same convergence as any create
                await step(ctx, "restore", _restore, provider, source, iid, event["name"])
            await step(ctx, "ensure created", lambda: provider.ensure_created(iid, event["name"], settings, **shape))
            await step(ctx, "ensure running", lambda: provider.ensure_running(iid).as_dict())
            needs_restart = await step(ctx, "apply settings", lambda: provider.apply_settings(iid, settings, **shape))
            restarted = False
            if needs_restart:
                await step(ctx, "restart", lambda: provider.restart(iid).as_dict())
                restarted = True
            # A checkpoint written before passwords were sealed holds it in plaintext: sealed here before use.
            connection = seal_connection(await step(ctx, "ensure app database", app_database, iid), sealer, iid)
            components = list(stacks.get_stack(event["spec"].get("stack", "standard")).install_components)
            if components:  # e.g. the MessageQueue stack: Howdah's queue schema inside the instance

                def install() -> list[str]:  # the password opened in memory only
                    return install_components(open_connection(connection, sealer, iid), components)

                await step(ctx, "install components", install)
            disabled = [e["name"] for e in event["spec"].get("extensions", []) if not e.get("enabled", True)]
            await step(ctx, "ensure extensions", provider.ensure_extensions, iid, wanted, disabled)
            replicate = getattr(provider, "ensure_replicas", None)
            if replicate is not None:  # local: read replicas streaming from the primary (kubernetes: in the spec)
                await step(ctx, "ensure replicas", replicate, iid, int(event["spec"].get("replicas", 1)))
            after = await observed(ctx, iid)
            if not after.get("accepting_connections"):
                return {"kind": "Error", "error": f"instance {iid} does not accept connections after {kind}",
                        "failure": "transient", "status": after}  # fmt: skip
            answer: StateKind = "Restarted" if kind == "Update" and restarted else ANSWERS[kind]
            return {"kind": answer, "actual_spec": event["spec"], "status": after, "connection": connection}

        async def lifecycle() -> dict[str, Any]:
            if kind == "Restart":
                await step(ctx, "restart", lambda: provider.restart(iid).as_dict())
            elif kind == "Stop":
                await step(ctx, "stop", provider.stop, iid)
            elif kind == "Start":
                await step(ctx, "ensure running", lambda: provider.ensure_running(iid).as_dict())
            elif kind == "Delete":
                await step(ctx, "delete", provider.delete, iid)
                return {}
            return {"status": await observed(ctx, iid)}

        if kind == "Backup":
            return await take_backup(ctx, event)
        if kind in ("Create", "Update"):
            return await run(ctx, event, converge)
        if kind in ("Restart", "Stop", "Start", "Delete"):
            return await run(ctx, event, lifecycle)
        await report(ctx, event, "Error", error=f"unknown CRUD event kind {kind!r}", failure="permanent")
        return "Error"

    return app
