"""``ctx``: what a workflow function uses to run steps, sleep, wait for signals and start children.

A workflow run replays the function from the top. Every ``ctx`` call takes the next position (index) in the
run, synchronously at the call, so positions are deterministic even under ``gather``. At a position that was
recorded before, the recorded value is returned (or the recorded error raised) without running anything; a
call that does not match the record is a :class:`NonDeterminismError`. New positions run and are
checkpointed. Waiting (sleep, signal, child) ends the run with ``_Suspend``: the worker parks the workflow's
dispatch message until it should wake and replays it then.

Every write carries the run's fencing token, and every step attempt (each retry included) starts only once the
run knows it still holds the workflow (``_lease.RunLease``): a run that has lost it stops.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import random as _random
import uuid as _uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from howdah.durable._codec import check_json, error_to_json
from howdah.durable._errors import (
    DuplicateStepName,
    NonDeterminismError,
    NotSerializable,
    PermanentError,
    StepFailed,
    StepTimeout,
    TransientError,
    WorkflowCancelled,
    WorkflowFailed,
)
from howdah.durable._lease import DeadlineExceeded, RunLease, attempt_limit
from howdah.durable._retry import DEFAULT_RETRY, RetryPolicy
from howdah.durable._store import RETRIED_ERRORS, DurableDatabaseError, LeaseLost, is_outage

if TYPE_CHECKING:
    from howdah.durable._store import Store

T = TypeVar("T")

# The attempt number of the step running in this task (or its thread); 0 outside steps. A context variable, so
# concurrent steps under gather each see their own.
_ATTEMPT: contextvars.ContextVar[int] = contextvars.ContextVar("howdah_step_attempt", default=0)


@dataclass(frozen=True)
class _Committed:
    """A step attempt's value that the attempt has checkpointed itself (:meth:`WorkflowContext.transaction`)."""

    value: Any


class _Suspend(BaseException):
    """The run must stop here and resume later (sleeping, or waiting for a signal or children)."""

    def __init__(
        self, status: str, wake_at: datetime | None, reason: str, signals: list[str] | None = None,
        children: list[str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(reason)
        self.status = status
        self.wake_at = wake_at
        self.reason = reason
        self.signals = signals or []
        self.children = children or []

    @staticmethod
    def merge(many: Sequence[_Suspend]) -> _Suspend:
        """One suspension for several branches: wake at the earliest time, for any awaited event."""
        wakes = [s.wake_at for s in many if s.wake_at is not None]
        return _Suspend(
            "waiting" if any(s.status == "waiting" for s in many) else "sleeping",
            min(wakes) if wakes else None,
            "; ".join(s.reason for s in many),
            [name for s in many for name in s.signals],
            [c for s in many for c in s.children],
        )


class _CancelRequested(BaseException):
    """Cancellation was requested: the run stops at this step boundary."""


@dataclass(frozen=True)
class _Record:
    name: str
    kind: str
    result: Any
    error: dict[str, Any] | None


def _now() -> datetime:
    return datetime.now(UTC)


class WorkflowContext:
    """The ``ctx`` argument of a workflow function."""

    def __init__(
        self,
        store: Store,
        workflow_id: str,
        name: str,
        args: dict[str, Any],
        recorded: Iterable[list[Any]],
        start_child: Callable[[str, dict[str, Any], str, str], Awaitable[str]],
        http_client: Any = None,
        *,
        run: RunLease,
        executor: Executor | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.workflow_name = name
        self.args = args
        self._store = store
        self._records = {int(r[0]): _Record(r[1], r[2], r[3], r[4]) for r in recorded}
        self._next = 0
        self._step_names: set[str] = set()
        self._start_child = start_child
        self._http_client = http_client
        self._run = run
        self._executor = executor  # where sync steps run (None: the event loop's default executor)

    @property
    def fencing_token(self) -> int:
        """This run's fencing token: the workflow's claim epoch, greater for every later run of it. Give it to
        external systems with each write so they can refuse a stale writer (``ctx.http`` sends it as the
        ``Fencing-Token`` header)."""
        return self._run.fence

    @property
    def attempt(self) -> int:
        """The attempt number (1 for the first try) of the step running now, in step code; 0 outside a step."""
        return _ATTEMPT.get()

    # --------------------------------------------------------------------------------------- positions
    def _position(self, name: str, kind: str) -> tuple[int, _Record | None]:
        """Take the next position now (synchronously) and return its record, checked against the call."""
        index = self._next
        self._next += 1
        return index, self._record_at(index, name, kind)

    def _record_at(self, index: int, name: str, kind: str) -> _Record | None:
        record = self._records.get(index)
        if record is not None and (record.name, record.kind) != (name, kind):
            raise NonDeterminismError(
                f"workflow {self.workflow_id!r} is not deterministic: at position {index} the replay reached "
                f"{kind} {name!r} but the recorded run had {record.kind} {record.name!r}"
            )
        return record

    async def _checkpoint(
        self, index: int, name: str, kind: str, result: Any, error: dict[str, Any] | None = None,
        attempts: int = 1, started: datetime | None = None,
    ) -> None:  # fmt: skip
        run = self._run
        run.check()
        sent = run.clock()
        try:
            cancel, lease_left = await self._store.checkpoint(
                self.workflow_id, run.fence, index, name, kind, result, error, attempts, started or _now()
            )
        except Exception as exc:  # refused (lost) or unknown (database unreachable): the run stops either way
            run.stop(exc)
            raise
        run.confirmed(sent, lease_left)
        if cancel:
            raise _CancelRequested()

    async def _before_attempt(self) -> None:
        """Start nothing unless this run still holds the workflow (raises LeaseLost, a database error, or
        DeadlineExceeded otherwise); stop here if cancellation was requested."""
        if await self._run.ensure():
            raise _CancelRequested()

    # ------------------------------------------------------------------------------------------- steps
    @overload
    def step(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, retry: RetryPolicy = ...,
        timeout: float | None = ..., **kwargs: Any,
    ) -> Awaitable[T]: ...  # fmt: skip

    @overload
    def step(
        self, name: str, fn: Callable[..., T], *args: Any, retry: RetryPolicy = ..., timeout: float | None = ...,
        **kwargs: Any,
    ) -> Awaitable[T]: ...  # fmt: skip

    def step(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float | None = None, **kwargs: Any,
    ) -> Awaitable[Any]:  # fmt: skip
        """Run ``fn(*args, **kwargs)`` once, checkpointing its JSON result; replays return the stored one.

        Sync functions run on one of the worker's step threads (as many as its concurrency). ``TransientError``
        (and ``retry.retry_on`` types) are retried with backoff; anything else, or running out of attempts,
        records the failure and raises :class:`StepFailed` — again on every replay. ``timeout``: seconds one
        attempt may take; past it the attempt fails with :class:`StepTimeout`, retried like a transient error
        (an async step is cancelled; a sync step's thread cannot be stopped and is abandoned). Each attempt
        starts only while the run holds the workflow; ``ctx.attempt`` tells step code which attempt it is.
        """
        index, record = self._take_step(name, timeout)

        async def attempt(_: int) -> Any:
            return await _call(fn, args, kwargs, self._executor)

        return self._run_step(index, name, record, attempt, retry, timeout)

    def transaction(
        self, name: str, fn: Callable[..., Awaitable[T]], *args: Any, retry: RetryPolicy = DEFAULT_RETRY,
        timeout: float | None = None, **kwargs: Any,
    ) -> Awaitable[T]:  # fmt: skip
        """A step whose writes commit with its checkpoint: ``await fn(conn, *args, **kwargs)`` runs inside the
        transaction that records its JSON result, on a connection of the app's pool, so its effect on the
        database happens exactly once — a crash, a lost lease or a failure at any instant rolls back both, and
        a replay returns the recorded result without running it. ``fn`` may change settings or the role for the
        transaction (``SET LOCAL``); the connection is reset before it is reused. A failed attempt rolls back
        and is retried like a step's (serialization failures and deadlocks are always retried); an error of
        the statement itself is recorded as the step's failure, with Postgres's own message."""
        index, record = self._take_step(name, timeout)
        started = _now()

        async def attempt(number: int) -> Any:
            run = self._run
            run.check()
            sent = run.clock()

            async def body(conn: Any) -> Any:
                return await fn(conn, *args, **kwargs)

            try:
                value, cancel, lease_left = await self._store.checkpoint_within(
                    body, f"the result of step {name!r}", self.workflow_id, run.fence, index, name, number, started
                )
            except (LeaseLost, DurableDatabaseError) as exc:  # the checkpoint was refused, or did not answer
                raise run.stop(exc) from None
            except Exception as exc:
                if is_outage(exc):
                    raise run.stop(exc) from exc
                if isinstance(exc, RETRIED_ERRORS):
                    raise TransientError(str(exc)) from exc
                raise
            run.confirmed(sent, lease_left)
            if cancel:
                raise _CancelRequested()
            return _Committed(value)

        return self._run_step(index, name, record, attempt, retry, timeout)

    def _take_step(self, name: str, timeout: float | None) -> tuple[int, _Record | None]:
        if not isinstance(name, str) or not name:
            raise ValueError("a step needs a non-empty name")
        if name in self._step_names:
            raise DuplicateStepName(
                f"workflow {self.workflow_name!r} runs two steps named {name!r}; give each step its own name "
                "(e.g. include the loop index)"
            )
        if timeout is not None and not timeout > 0:
            raise ValueError("a step timeout must be a positive number of seconds")
        self._step_names.add(name)
        return self._position(name, "step")

    async def _run_step(
        self, index: int, name: str, record: _Record | None, attempt_fn: Callable[[int], Awaitable[Any]],
        retry: RetryPolicy, timeout: float | None = None,
    ) -> Any:  # fmt: skip
        """Attempts of a step until one succeeds or the retry policy gives up; ``attempt_fn(n)`` runs attempt
        ``n`` and returns its value, or a :class:`_Committed` value it has already checkpointed itself."""
        if record is not None:
            if record.error is not None:
                raise StepFailed(name, record.error)
            return record.result["value"]
        started = _now()
        attempt = 0
        while True:
            attempt += 1
            await self._before_attempt()
            limit, by_deadline = attempt_limit(timeout, self._run.clock(), self._run.deadline)
            window = asyncio.timeout(limit)
            token = _ATTEMPT.set(attempt)
            try:
                async with window:
                    value = await attempt_fn(attempt)
                if isinstance(value, _Committed):
                    return value.value
                value = check_json(value, f"the result of step {name!r}")  # as a replay will see it
                break
            except (NotSerializable, PermanentError) as exc:
                failure: BaseException = exc
            except Exception as exc:
                if self._run.stopped:
                    raise  # the run lost the workflow or the database: no failure to record
                if isinstance(exc, TimeoutError) and window.expired():
                    if by_deadline:
                        raise self._run.stop(DeadlineExceeded(f"step {name!r} ran into the deadline")) from None
                    assert timeout is not None
                    exc = StepTimeout(name, timeout)
                if retry.should_retry(exc, attempt):
                    await asyncio.sleep(retry.delay(attempt))
                    continue
                failure = exc
            finally:
                _ATTEMPT.reset(token)
            error = error_to_json(failure)
            error["attempts"] = attempt
            await self._checkpoint(index, name, "step", None, error, attempt, started)
            raise StepFailed(name, error) from failure
        await self._checkpoint(index, name, "step", {"value": value}, None, attempt, started)
        return value

    async def _recorded_value(self, name: str, kind: str, make: Callable[[], Any]) -> Any:
        index, record = self._position(name, kind)
        return await self._value_at(index, name, kind, record, make)

    async def _value_at(self, index: int, name: str, kind: str, record: _Record | None, make: Callable[[], Any]) -> Any:
        if record is not None:
            return record.result["value"]
        value = make()
        await self._checkpoint(index, name, kind, {"value": value})
        return value

    async def now(self) -> datetime:
        """The current time, recorded: a replay sees the same instant."""
        return datetime.fromisoformat(await self._recorded_value("now", "now", lambda: _now().isoformat()))

    async def random(self) -> float:
        """A random float in [0, 1), recorded."""
        return float(await self._recorded_value("random", "random", _random.random))

    async def uuid(self) -> str:
        """A random UUID (as text), recorded."""
        return str(await self._recorded_value("uuid", "uuid", lambda: str(_uuid.uuid4())))

    # ------------------------------------------------------------------------------------------ timers
    async def sleep(self, seconds: float) -> None:
        """Sleep durably: the worker is free meanwhile, and a restart does not reset the timer."""
        if seconds < 0:
            raise ValueError("cannot sleep a negative time")
        await self._sleep(lambda: _now() + timedelta(seconds=seconds))

    async def sleep_until(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("sleep_until needs a timezone-aware datetime")
        await self._sleep(lambda: when)

    async def _sleep(self, wake: Callable[[], datetime]) -> None:
        until = datetime.fromisoformat(await self._recorded_value("sleep", "sleep", lambda: wake().isoformat()))
        if _now() < until:
            raise _Suspend("sleeping", until, f"sleep until {until.isoformat(timespec='seconds')}")

    # ----------------------------------------------------------------------------------------- signals
    def wait_for_signal(self, name: str, timeout: float | None = None) -> Awaitable[Any]:
        """The payload of the next signal ``name`` sent to this workflow; ``None`` after ``timeout`` seconds."""
        if not isinstance(name, str) or not name:
            raise ValueError("a signal needs a non-empty name")
        if timeout is not None and timeout < 0:
            raise ValueError("a signal timeout cannot be negative")
        # Both positions are taken now, at the call, so branches under gather replay in the same order.
        deadline_at = self._position(f"deadline:{name}", "deadline") if timeout is not None else None
        signal_at = self._position(f"signal:{name}", "signal")
        return self._wait_for_signal(name, timeout, deadline_at, signal_at)

    async def _wait_for_signal(
        self, name: str, timeout: float | None, deadline_at: tuple[int, _Record | None] | None,
        signal_at: tuple[int, _Record | None],
    ) -> Any:  # fmt: skip
        deadline: datetime | None = None
        if deadline_at is not None:
            assert timeout is not None
            deadline = datetime.fromisoformat(
                await self._value_at(
                    deadline_at[0], f"deadline:{name}", "deadline", deadline_at[1],
                    lambda: (_now() + timedelta(seconds=timeout)).isoformat(),
                )
            )  # fmt: skip
        index, record = signal_at
        step_name = f"signal:{name}"
        if record is not None:
            return record.result.get("payload")
        self._run.check()
        try:
            found, payload = await self._store.take_signal(
                self.workflow_id, self._run.fence, index, step_name, name, _now()
            )
        except Exception as exc:
            self._run.stop(exc)
            raise
        if found:
            return payload
        if deadline is not None and _now() >= deadline:
            await self._checkpoint(index, step_name, "signal", {"payload": None, "timed_out": True})
            return None
        raise _Suspend("waiting", deadline, f"signal {name!r}", signals=[name])

    # ------------------------------------------------------------------------------------ fan-out / in
    async def gather(self, *awaitables: Awaitable[Any]) -> list[Any]:
        """Run steps / child results concurrently; results in order. The first failing branch's error is
        raised (after every branch has run as far as it can); waiting branches suspend the workflow."""
        outcomes = await asyncio.gather(*awaitables, return_exceptions=True)
        self._run.check()  # a branch found the run stopped (lease lost, database gone, deadline): nothing else counts
        suspends = [o for o in outcomes if isinstance(o, _Suspend)]
        for outcome in outcomes:
            if isinstance(outcome, _CancelRequested):
                raise outcome
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, _Suspend):
                raise outcome
        if suspends:
            raise _Suspend.merge(suspends)
        return list(outcomes)

    async def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, concurrency: int = 8, name: str | None = None,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> list[Any]:  # fmt: skip
        """``fn(item)`` as one step per item (named ``name[i]``), at most ``concurrency`` at once."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        base = name or getattr(fn, "__name__", "map")
        gate = asyncio.Semaphore(concurrency)

        async def bounded(step: Awaitable[Any]) -> Any:
            async with gate:
                return await step

        steps = [self.step(f"{base}[{i}]", fn, item, retry=retry) for i, item in enumerate(items)]
        return await self.gather(*(bounded(s) for s in steps))

    # ---------------------------------------------------------------------------------------- children
    def start_child(self, name: str, args: dict[str, Any] | None = None) -> Awaitable[ChildHandle]:
        """Start workflow ``name`` as a child (id ``<parent>/<position>``); cancelling the parent cancels it."""
        index, record = self._position(f"child:{name}", "child")
        return self._start_child_at(index, record, name, args)

    async def _start_child_at(
        self, index: int, record: _Record | None, name: str, args: dict[str, Any] | None
    ) -> ChildHandle:
        if record is not None:
            return ChildHandle(self, record.result["value"])
        child_id = f"{self.workflow_id}/{index}"
        await self._before_attempt()
        await self._start_child(name, check_json(args or {}, "child workflow args"), child_id, self.workflow_id)
        await self._checkpoint(index, f"child:{name}", "child", {"value": child_id})
        return ChildHandle(self, child_id)

    def child(self, name: str, args: dict[str, Any] | None = None) -> Awaitable[Any]:
        """Start a child workflow and wait for its result (both positions taken now, at the call)."""
        start_at = self._position(f"child:{name}", "child")
        result_index = self._next
        self._next += 1

        async def run() -> Any:
            handle = await self._start_child_at(*start_at, name, args)
            return await handle._result_at(result_index)

        return run()

    # -------------------------------------------------------------------------------------------- http
    async def http(
        self, method: str, url: str, *, json: Any = None, headers: dict[str, str] | None = None,
        name: str | None = None, idempotency_key: str | None = None, timeout: float = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> dict[str, Any]:  # fmt: skip
        """An HTTP call as a step: sends ``Idempotency-Key`` (default ``<workflow id>:<step name>``) and
        ``Fencing-Token`` (:attr:`fencing_token`), records ``{"status", "headers", "body"}``. 5xx and network
        errors/timeouts are transient (retried), 4xx is permanent."""
        import httpx

        step_name = name or f"{method.upper()} {url}"
        key = idempotency_key or f"{self.workflow_id}:{step_name}"
        client = self._http_client

        async def call() -> dict[str, Any]:
            send_headers = {**(headers or {}), "Idempotency-Key": key, "Fencing-Token": str(self.fencing_token)}
            try:
                if client is not None:
                    response = await client.request(method, url, json=json, headers=send_headers, timeout=timeout)
                else:
                    async with httpx.AsyncClient() as own:
                        response = await own.request(method, url, json=json, headers=send_headers, timeout=timeout)
            except httpx.TransportError as exc:
                raise TransientError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            if response.status_code >= 500:
                raise TransientError(f"{method} {url} answered {response.status_code}")
            if response.status_code >= 400:
                raise PermanentError(f"{method} {url} answered {response.status_code}: {response.text[:500]}")
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            return {"status": response.status_code, "headers": dict(response.headers), "body": body}

        return await self.step(step_name, call, retry=retry)


async def _call(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], executor: Executor | None
) -> Any:
    """One attempt of a step body: awaited when async, on a thread of ``executor`` when sync (with this task's
    context variables, so ``ctx.attempt`` is right in the thread)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    in_context = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    value = await asyncio.get_running_loop().run_in_executor(executor, in_context)
    if inspect.isawaitable(value):
        value = await value
    return value


class ChildHandle:
    """A child workflow started by :meth:`WorkflowContext.start_child`."""

    def __init__(self, ctx: WorkflowContext, workflow_id: str) -> None:
        self._ctx = ctx
        self.workflow_id = workflow_id

    def result(self) -> Awaitable[Any]:
        """The child's result (recorded); raises :class:`WorkflowFailed` / :class:`WorkflowCancelled`."""
        index = self._ctx._next
        self._ctx._next += 1
        return self._result_at(index)

    async def _result_at(self, index: int) -> Any:
        ctx = self._ctx
        name = f"result:{self.workflow_id}"
        record = ctx._record_at(index, name, "child_result")
        if record is None:
            info = (await ctx._store.children_status([self.workflow_id]))[self.workflow_id]
            if not info.done:
                raise _Suspend("waiting", None, f"child {self.workflow_id}", children=[self.workflow_id])
            outcome = {"status": info.status, "value": info.result, "error": info.error}
            await ctx._checkpoint(index, name, "child_result", outcome)
        else:
            outcome = record.result
        if outcome["status"] == "succeeded":
            return outcome["value"]
        if outcome["status"] == "cancelled":
            raise WorkflowCancelled(f"child workflow {self.workflow_id!r} was cancelled")
        raise WorkflowFailed(self.workflow_id, outcome["error"])
