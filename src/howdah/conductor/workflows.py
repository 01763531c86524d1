"""The conductor's durable workflows: one per CRUD event, at most one active per instance.

Each provider call is a checkpointed step, so a conductor killed at any point resumes where it stopped, and
every call is idempotent, so a step that was interrupted and runs again converges instead of duplicating.
Transient provider failures are retried with backoff; a failure that remains ends the workflow with an
``Error`` state event carrying the provider's message (Postgres's own), its classification (permanent or
transient, :mod:`howdah.control.failures`: the reconciler re-drives only transient ones) and the status observed
after it, so that a server that failed to start is never reported running.

An instance's password is sealed (:mod:`howdah.control.sealing`) inside the step that receives it from the
provider: step results and state events carry only ``password_sealed``, opened in memory where it is used.

Provider calls are blocking: each runs in the executor the conductor gives (its own thread pool), never in the
event loop's default executor, which the API and user workers sharing the loop depend on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from pydantic import ValidationError

from howdah.control import stacks
from howdah.control.events import STATE_QUEUE, BackupKind, StateKind
from howdah.control.failures import classify
from howdah.control.sealing import Sealer, default_sealer, open_connection, seal_connection
from howdah.control.spec import InstanceSpec
from howdah.durable import DurableApp, RetryPolicy, StepFailed, WorkflowContext
from howdah.pg.migrations import upgrade
from howdah.providers import Backup, Capability, Provider, ProviderError, RecoveryTarget, TransientProviderError
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


def _backup_of(source: dict[str, Any]) -> Backup:
    """The backup a Create's ``restore_from`` names (as the control plane recorded it)."""
    return Backup(source["backup_id"], source["instance_id"], source["location"], int(source.get("size_bytes") or 0),
                  datetime.now(UTC))  # fmt: skip


_T = TypeVar("_T")


@dataclass
class InstanceWorkflows:
    """How one data plane carries out CRUD events through ``provider``: ``instance_event`` is the workflow, the
    other methods its parts. ``retry`` is how each provider call is retried within a run; ``executor`` runs the
    provider's blocking calls (None: the loop's default, for a workflow run outside a conductor)."""

    provider: Provider
    data_plane: str
    app: DurableApp
    sealer: Sealer
    retry: RetryPolicy
    executor: Executor | None = None

    async def call(self, ctx: WorkflowContext, name: str, fn: Callable[[], _T]) -> _T:
        """``fn`` (a blocking provider call) as the checkpointed step ``name``, in the executor."""

        async def in_executor() -> _T:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn)

        return await ctx.step(name, in_executor, retry=self.retry)

    async def report(
        self, ctx: WorkflowContext, event: dict[str, Any], kind: StateKind | BackupKind, **fields: Any
    ) -> None:
        body = {"instance_id": event["instance_id"], "event": kind, "generation": event["generation"],
                "data_plane": self.data_plane, **fields}  # fmt: skip

        async def send() -> int:
            return await self.app.queue.send(STATE_QUEUE, body)

        await ctx.step(f"report {kind}", send)

    async def observed(self, ctx: WorkflowContext, iid: str, name: str = "status") -> dict[str, Any]:
        return dict(await self.call(ctx, name, lambda: self.provider.status(iid).as_dict()))

    async def instance_event(self, ctx: WorkflowContext, event: dict[str, Any]) -> str:
        """The workflow of one CRUD event."""
        kind = event["kind"]
        if kind == "Backup":
            return await self.take_backup(ctx, event)
        if kind == "DeleteBackup":
            return await self.delete_backup(ctx, event)
        if kind == "VerifyBackup":
            return await self.verify_backup(ctx, event)
        if kind in ("Create", "Update"):
            return await self.answer(ctx, event, self.converge(ctx, event))
        if kind in ("Restart", "Stop", "Start", "Delete"):
            return await self.answer(ctx, event, self.lifecycle(ctx, event))
        await self.report(ctx, event, "Error", error=f"unknown CRUD event kind {kind!r}", failure="permanent")
        return "Error"

    async def answer(self, ctx: WorkflowContext, event: dict[str, Any], work: Awaitable[dict[str, Any]]) -> str:
        """Run ``work`` and report its outcome: its answer, or an Error with the status the failure left."""
        try:
            fields = await work
        except StepFailed as exc:
            message = exc.error.get("message", str(exc))
            try:  # what the failure left behind (best effort: the report matters more)
                status: dict[str, Any] | None = await self.observed(ctx, event["instance_id"], "status after the error")
            except StepFailed:
                status = None
            await self.report(ctx, event, "Error", error=message, failure=classify(exc.error.get("type")),
                              **({} if status is None else {"status": status}))  # fmt: skip
            return f"Error: {message}"
        kind = fields.pop("kind", ANSWERS[event["kind"]])
        await self.report(ctx, event, kind, **fields)
        return str(kind)

    async def converge(self, ctx: WorkflowContext, event: dict[str, Any]) -> dict[str, Any]:
        """Create or update until the instance matches the event (both are the same idempotent path)."""
        provider, sealer = self.provider, self.sealer
        iid, kind, name = event["instance_id"], event["kind"], event["name"]
        settings: dict[str, str] = event.get("settings", {})
        try:
            spec = InstanceSpec.model_validate(event["spec"])
        except ValidationError as exc:  # a control plane of another version: reported, never retried
            return {"kind": "Error", "error": f"the event's spec is not valid here: {exc}", "failure": "permanent"}
        source = event.get("restore_from")
        if source and source.get("source_instance_id"):  # as another instance was at a point in time
            target = RecoveryTarget.of(source)
            await self.call(
                ctx, "restore to a point in time",
                lambda: provider.restore_to(source["source_instance_id"], iid, name, target),
            )  # fmt: skip
        elif source:  # a new instance from a backup: its data, then the same convergence as any create
            await self.call(ctx, "restore", lambda: provider.restore(_backup_of(source), iid, name))
        await self.call(ctx, "ensure created", lambda: provider.ensure_created(iid, name, settings, spec=spec))
        await self.call(ctx, "ensure running", lambda: provider.ensure_running(iid).as_dict())
        needs_restart = await self.call(
            ctx, "apply settings", lambda: provider.apply_settings(iid, settings, spec=spec)
        )
        restarted = False
        if needs_restart:
            await self.call(ctx, "restart", lambda: provider.restart(iid).as_dict())
            restarted = True
        app_database = await self.call(
            ctx, "ensure app database",  # the password sealed before it becomes a step result
            lambda: seal_connection(provider.ensure_app_database(iid).as_dict(), sealer, iid),
        )  # fmt: skip
        # A checkpoint written before passwords were sealed holds it in plaintext: sealed here before use.
        connection = seal_connection(app_database, sealer, iid)
        components = list(stacks.get_stack(spec.stack).install_components)
        if components:  # e.g. the MessageQueue stack: Howdah's queue schema inside the instance (password in memory)
            await self.call(
                ctx, "install components",
                lambda: install_components(open_connection(connection, sealer, iid), components),
            )  # fmt: skip
        wanted: list[str] = event.get("extensions", [])
        disabled = [e["name"] for e in event["spec"].get("extensions", []) if not e.get("enabled", True)]
        await self.call(ctx, "ensure extensions", lambda: provider.ensure_extensions(iid, wanted, disabled))
        if Capability.REPLICAS in provider.capabilities:  # else the provider made them from the spec
            await self.call(ctx, "ensure replicas", lambda: provider.ensure_replicas(iid, spec.replicas))
        after = await self.observed(ctx, iid)
        if not after.get("accepting_connections"):
            return {"kind": "Error", "error": f"instance {iid} does not accept connections after {kind}",
                    "failure": "transient", "status": after}  # fmt: skip
        answer: StateKind = "Restarted" if kind == "Update" and restarted else ANSWERS[kind]
        return {"kind": answer, "actual_spec": event["spec"], "status": after, "connection": connection}

    async def lifecycle(self, ctx: WorkflowContext, event: dict[str, Any]) -> dict[str, Any]:
        provider, iid, kind = self.provider, event["instance_id"], event["kind"]
        if kind == "Restart":
            await self.call(ctx, "restart", lambda: provider.restart(iid).as_dict())
        elif kind == "Stop":
            await self.call(ctx, "stop", lambda: provider.stop(iid))
        elif kind == "Start":
            await self.call(ctx, "ensure running", lambda: provider.ensure_running(iid).as_dict())
        elif kind == "Delete":
            await self.call(ctx, "delete", lambda: provider.delete(iid))
            return {}
        return {"status": await self.observed(ctx, iid)}

    async def take_backup(self, ctx: WorkflowContext, event: dict[str, Any]) -> str:
        """Not a state change: the outcome goes to control.backups (BackupCompleted / BackupFailed)."""
        iid, backup_id = event["instance_id"], event.get("backup_id")
        try:
            done = await self.call(ctx, "backup", lambda: _backup_dict(self.provider.backup(iid, backup_id)))
        except StepFailed as exc:
            await self.report(ctx, event, "BackupFailed", backup={"backup_id": backup_id},
                              error=exc.error.get("message", str(exc)))  # fmt: skip
            return "BackupFailed"
        await self.report(ctx, event, "BackupCompleted", backup=done)
        return "BackupCompleted"

    async def delete_backup(self, ctx: WorkflowContext, event: dict[str, Any]) -> str:
        """Remove a base backup the control plane has already let go of (its record is gone): nothing to report
        but the workflow's own outcome."""
        iid, backup_id = event["instance_id"], str(event["backup_id"])
        try:
            await self.call(ctx, "delete backup", lambda: self.provider.delete_backup(iid, backup_id))
        except StepFailed as exc:
            return f"Error: {exc.error.get('message', str(exc))}"
        return "BackupDeleted"

    async def verify_backup(self, ctx: WorkflowContext, event: dict[str, Any]) -> str:
        """Restore the instance's latest backup and archived WAL into a scratch instance (archiving off), check
        that it starts and answers a query, delete it, and report the outcome (RestoreVerified: at, ok, seconds,
        error). The scratch instance is deleted whatever happened."""
        provider, sealer, iid = self.provider, self.sealer, event["instance_id"]
        scratch, name = f"verify-{event['event_id']}", f"verify-{event['name']}"[:63]
        spec = InstanceSpec.model_validate({**event["spec"], "name": name, "backup": {"enabled": False}})
        started = await ctx.step("verification started", _now)
        error = None
        try:
            await self.call(ctx, "restore scratch", lambda: provider.restore_to(iid, scratch, name, RecoveryTarget()))
            settings: dict[str, str] = event.get("settings", {})
            await self.call(ctx, "create scratch", lambda: provider.ensure_created(scratch, name, settings, spec=spec))
            await self.call(ctx, "start scratch", lambda: provider.ensure_running(scratch).as_dict())
            sealed = await self.call(
                ctx, "scratch app database",
                lambda: seal_connection(provider.ensure_app_database(scratch).as_dict(), sealer, scratch),
            )  # fmt: skip
            await self.call(ctx, "query scratch", lambda: answers(open_connection(sealed, sealer, scratch)))
        except StepFailed as exc:
            error = exc.error.get("message", str(exc))
        try:
            await self.call(ctx, "delete scratch", lambda: provider.delete(scratch))
        except StepFailed as exc:
            error = error or f"the scratch instance {scratch} could not be deleted: {exc.error.get('message', exc)}"
        ended = await ctx.step("verification ended", _now)
        seconds = round((datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds(), 1)
        outcome = {"at": ended, "ok": error is None, "seconds": seconds, "error": error}
        await self.report(ctx, event, "RestoreVerified", verification=outcome)
        return "RestoreVerified" if error is None else f"RestoreVerified: {error}"


async def _now() -> str:
    return datetime.now(UTC).isoformat()


def answers(connection: dict[str, Any]) -> int:
    """Connect to a restored instance as its app role (search_path pinned) and count its relations: it answers
    queries."""
    with psycopg.connect(
        host=connection["host"], port=connection["port"], user=connection["user"], password=connection["password"],
        dbname=connection["dbname"], autocommit=True, connect_timeout=10, options="-c search_path=pg_catalog",
    ) as conn:  # fmt: skip
        row = conn.execute("SELECT count(*) FROM pg_catalog.pg_class").fetchone()
    if row is None or int(row[0]) <= 0:
        raise ProviderError("the restored instance answered, but lists no relations")
    return int(row[0])


def build_app(
    provider: Provider, data_plane: str, dsn: str | None = None, *, lease: int = 30,
    provider_retry: RetryPolicy = PROVIDER_RETRY, sealer: Sealer | None = None, executor: Executor | None = None,
) -> tuple[DurableApp, InstanceWorkflows]:  # fmt: skip
    """The DurableApp whose ``instance_event`` workflow carries out one data plane's CRUD events through
    ``provider``, and those workflows (their ``executor`` may be set later, before a worker runs them);
    ``sealer``: how instance passwords are sealed (default :func:`~howdah.control.sealing.default_sealer`; the
    control plane must use the same)."""
    app = DurableApp(dsn, queue=f"dp_{data_plane.replace('-', '_')}_wf", lease=lease)
    workflows = InstanceWorkflows(provider, data_plane, app, sealer or default_sealer(), provider_retry, executor)
    app.workflow(name="instance_event", key="instance_id", on_conflict="queue")(workflows.instance_event)
    return app, workflows
