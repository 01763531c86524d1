"""A durable worker process for the reliability tests: ``python worker_proc.py '<json config>'``.

Config: ``dsn``, ``queue``, ``worker`` (its name in the ``effects`` table), ``lease`` (seconds, default 2),
``concurrency`` (default 8), ``schedule`` (a cron string: also declare the ``every_tick`` schedule, catch-up).
It runs until SIGTERM (exit 0) or SIGKILL, and records what its steps do in the database's tables:

- ``effects (workflow_id, step, phase, worker, at)``: a step body writes ``start`` when it begins and ``end`` just
  before it returns, so a step that ran twice (e.g. interrupted by a kill) shows two ``start`` rows; workflow
  code between steps writes ``pause`` rows (on every replay).
- ``gates (workflow_id, point)``: a step or pause marked as blocking waits until the test inserts its row, which
  lets the test kill the process at a known instant. A ``flaky`` step fails with ``TransientError`` (retried)
  until its gate ``ok:<step>`` is open.

Database errors inside steps become ``TransientError`` (retried with a patient policy), so a Postgres restart
delays the steps instead of failing them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from howdah.df import install as install_df
from howdah.durable import DurableApp, RetryPolicy, TransientError, Worker, WorkflowContext

PATIENT = RetryPolicy(max_attempts=60, initial_delay=0.1, max_delay=1.0, jitter=False)


def build(config: dict[str, Any]) -> tuple[DurableApp, AsyncConnectionPool]:
    worker = config["worker"]
    app = DurableApp(config["dsn"], queue=config["queue"], lease=config.get("lease", 2), retention=None)
    pool = AsyncConnectionPool(
        config["dsn"],
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True},
        check=AsyncConnectionPool.check_connection,
        open=False,
    )

    async def sql(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        try:
            async with pool.connection(timeout=2) as conn:
                cursor = await conn.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
        except (psycopg.OperationalError, psycopg.errors.AdminShutdown) as exc:
            raise TransientError(f"database unavailable: {exc}") from exc

    async def effect(workflow_id: str, step: str, phase: str) -> None:
        await sql(
            "INSERT INTO effects (workflow_id, step, phase, worker) VALUES (%s, %s, %s, %s)",
            (workflow_id, step, phase, worker),
        )

    async def wait_gate(workflow_id: str, point: str) -> None:
        deadline = time.monotonic() + 60
        while not await sql("SELECT 1 FROM gates WHERE workflow_id = %s AND point = %s", (workflow_id, point)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {point!r} of {workflow_id!r} never opened")
            await asyncio.sleep(0.02)

    async def run_step(workflow_id: str, step: str, block: bool, hold: float) -> str:
        await effect(workflow_id, step, "start")
        if block:
            await wait_gate(workflow_id, step)
        if hold:
            await asyncio.sleep(hold)
        await effect(workflow_id, step, "end")
        return f"{step} by {worker}"

    async def flaky_step(workflow_id: str, step: str) -> str:
        await effect(workflow_id, step, "start")
        if not await sql("SELECT 1 FROM gates WHERE workflow_id = %s AND point = %s", (workflow_id, f"ok:{step}")):
            raise TransientError(f"{step}: not yet")
        await effect(workflow_id, step, "end")
        return f"{step} by {worker}"

    async def tx_step(conn: psycopg.AsyncConnection[Any], workflow_id: str, step: str, block: bool) -> str:
        """A ``ctx.transaction`` body: ``start`` is written on its own (the attempt began), ``tx`` inside the
        step's transaction, which commits only with the checkpoint."""
        await effect(workflow_id, step, "start")
        await conn.execute(
            "INSERT INTO effects (workflow_id, step, phase, worker) VALUES (%s, %s, 'tx', %s)",
            (workflow_id, step, worker),
        )
        if block:
            await wait_gate(workflow_id, step)
        return f"{step} by {worker} in its transaction"

    @app.workflow(name="pipeline")
    async def pipeline(ctx: WorkflowContext, args: dict[str, Any]) -> list[Any]:
        """Steps ``args["steps"]``; before step X it may pause (``pause_before``: workflow code blocked on a gate,
        i.e. between two steps), sleep (``sleep_before`` + ``sleep``) or wait for signal ``go``
        (``signal_before``); step ``block`` waits for its gate inside the step; step ``flaky`` fails until its
        gate ``ok:<step>`` opens; the steps in ``transactional`` run as ``ctx.transaction`` steps."""
        wf, out = ctx.workflow_id, []
        for name in args["steps"]:
            if args.get("pause_before") == name:
                await effect(wf, f"pause:{name}", "pause")
                await wait_gate(wf, f"pause:{name}")
            if args.get("sleep_before") == name:
                await ctx.sleep(args["sleep"])
            if args.get("signal_before") == name:
                out.append(await ctx.wait_for_signal("go"))
            if name in args.get("transactional", ()):
                out.append(await ctx.transaction(name, tx_step, wf, name, args.get("block") == name, retry=PATIENT))
                continue
            if args.get("flaky") == name:
                out.append(await ctx.step(name, flaky_step, wf, name, retry=PATIENT))
                continue
            out.append(
                await ctx.step(name, run_step, wf, name, args.get("block") == name, args.get("hold", 0), retry=PATIENT)
            )
        return out

    @app.workflow(name="keyed", key="k", on_conflict="queue")
    async def keyed(ctx: WorkflowContext, args: dict[str, Any]) -> str:
        """Records its active interval: ``enter`` (first step) to ``leave`` (last step)."""
        wf = ctx.workflow_id
        await ctx.step("enter", run_step, wf, "enter", False, 0, retry=PATIENT)
        await ctx.step("work", run_step, wf, "work", False, args.get("hold", 0.01), retry=PATIENT)
        await ctx.step("leave", run_step, wf, "leave", False, 0, retry=PATIENT)
        return wf

    if config.get("df"):  # the workflows defined in SQL (df.start), on this worker's queue
        install_df(app)

    if config.get("schedule"):

        async def every_tick(ctx: WorkflowContext, args: dict[str, Any]) -> str:
            return await ctx.step("tick", run_step, ctx.workflow_id, "tick", False, 0, retry=PATIENT)

        app.schedule(config["schedule"], name="every_tick", missed="catch_up")(every_tick)

    return app, pool


async def main(config: dict[str, Any]) -> None:
    app, pool = build(config)
    await pool.open(wait=True, timeout=30)
    try:
        async with app:
            worker = Worker(
                app,
                concurrency=config.get("concurrency", 8),
                poll_interval=0.2,
                schedule_interval=config.get("schedule_interval", 0.3),
            )
            await worker.run()
    finally:
        await pool.close()


if __name__ == "__main__":
    settings = json.loads(sys.argv[1])
    logging.basicConfig(
        level=logging.WARNING, format=f"[{settings['worker']}] %(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(settings))
