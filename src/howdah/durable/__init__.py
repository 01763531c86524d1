"""Durable workflows on the Howdah queue: checkpointed steps, timers, signals, schedules, fan-out/in.

>>> app = DurableApp(dsn)
>>> @app.workflow()
... async def onboard(ctx, args):
...     account = await ctx.step("create account", create_account, args["email"])
...     await ctx.sleep(3600)
...     await ctx.step("send welcome", send_welcome, account)
"""

from howdah.durable._app import DEFAULT_QUEUE, DurableApp, WorkflowHandle, WorkflowType
from howdah.durable._context import ChildHandle, WorkflowContext
from howdah.durable._errors import (
    DuplicateStepName,
    DurableError,
    NonDeterminismError,
    NotSerializable,
    PermanentError,
    StepFailed,
    StepTimeout,
    TransientError,
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowConflict,
    WorkflowFailed,
    WorkflowFinished,
    WorkflowNotFound,
)
from howdah.durable._lease import DeadlineExceeded
from howdah.durable._retry import DEFAULT_RETRY, NO_RETRY, RetryPolicy
from howdah.durable._schedule import InvalidSchedule, Schedule, due_ticks, next_tick
from howdah.durable._schema import COMPONENT
from howdah.durable._store import LeaseLost, StepInfo, WorkflowInfo
from howdah.durable._worker import Worker, run_worker

__all__ = [
    "COMPONENT",
    "DEFAULT_QUEUE",
    "DEFAULT_RETRY",
    "NO_RETRY",
    "ChildHandle",
    "DeadlineExceeded",
    "DuplicateStepName",
    "DurableApp",
    "DurableError",
    "InvalidSchedule",
    "LeaseLost",
    "NonDeterminismError",
    "NotSerializable",
    "PermanentError",
    "RetryPolicy",
    "Schedule",
    "StepFailed",
    "StepInfo",
    "StepTimeout",
    "TransientError",
    "UnknownWorkflow",
    "Worker",
    "WorkflowCancelled",
    "WorkflowConflict",
    "WorkflowContext",
    "WorkflowFailed",
    "WorkflowFinished",
    "WorkflowHandle",
    "WorkflowInfo",
    "WorkflowNotFound",
    "WorkflowType",
    "due_ticks",
    "next_tick",
    "run_worker",
]
