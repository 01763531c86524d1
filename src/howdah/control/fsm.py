"""The instance state machine: which request or data-plane report may move an instance to which state.

Pure and I/O-free. An API handler calls :func:`next_state` inside the transaction that writes the instance row;
the reconciler calls it for every report a data plane sends back. A refusal is a :class:`TransitionError` whose
message names the state and the event, fit to be returned as an HTTP 409.

Two kinds of events:

- **requests** (:data:`REQUESTS`: Create, Update, Restart, Stop, Start, Delete) come from users (or from the
  reconciler retrying an instance in Error). A request the current state forbids is an
  :class:`IllegalTransition`.
- **reports** (:data:`REPORTS`: Created, Updated, Restarted, Stopped, Started, Deleted, Error, Recovered) come
  from the data plane. A report that matches no work of the current state is an :class:`UndefinedTransition`:
  the reconciler logs and archives it, and the state is untouched.

Every event on a Deleted instance is illegal: Deleted is terminal.

Decisions where the design left a choice:

- **Late or repeated reports are no-ops when they confirm the current state**: Up + Created/Updated/Restarted/
  Started/Recovered stays Up, Stopped + Stopped stays Stopped, Error + Error stays Error (a new error message).
  A conductor redelivers a report whenever its lease expires, so a second copy is normal and must be harmless.
  A report that would move a settled instance somewhere else (Stopped + Started, Up + Stopped) is undefined,
  so a stale copy can never resurrect or stop an instance. (Telling a stale copy from a fresh one while work is
  in flight — Configuring + an old Updated — needs a generation number carried by the events; that is the
  reconciler's job, not this table's.)
- **Either report completes an update**: Configuring + Restarted and Restarting + Updated both go Up. The
  control plane predicts a restart from setting contexts; the data plane decides from ``pending_restart`` and
  may find otherwise. The work asked for is done either way.
- **An update of a Stopped instance stays Stopped**: a stopped instance has no server to reconfigure, and a
  user who stopped it expects it to stay stopped (and not to pay for it). The new desired spec is applied by
  the next Start, which boots the server and so applies every setting, postmaster ones included. Nothing is
  sent to the data plane, and Stopped has no work in flight, so further updates are accepted too.
- **Updates fold into work in flight**: Submitted, Starting, Stopping and Restarting keep their state on
  Update (the work in flight will be followed by a convergence of actual to desired), Configuring becomes
  Restarting when the update needs a restart. The API still answers 409 while ``has_active_work`` is true;
  these rules say where the state goes when a change is accepted anyway (delete, reconciler re-drives).
- **Deleting refuses updates** (the one non-terminal state that does): an update could never take effect and
  accepting it would mislead. Delete itself is accepted again (idempotent, as HTTP DELETE is).
- **Lifecycle actions need a settled state**: Restart and Stop are accepted from Up, Start from Stopped, all
  three from Error (as retries); elsewhere they are illegal (Stop while Stopped, Restart while Configuring).
- **Create** is the rule a new instance passes: it starts in :data:`INITIAL_STATE` (Submitted) and
  Submitted + Create stays Submitted (so a re-sent Create is harmless); Error + Create retries a failed
  creation. Any other state already has an instance, so Create is illegal there.
- **Error is left** by Recovered (→ Up) or by any request, which retries: Create → Submitted,
  Update → Configuring/Restarting, Restart → Restarting, Stop → Stopping, Start → Starting,
  Delete → Deleting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from howdah.errors import HowdahError

__all__ = [
    "ACTIVE_WORK_STATES",
    "INITIAL_STATE",
    "REPORTS",
    "REQUESTS",
    "SETTLED_STATES",
    "TERMINAL_STATES",
    "Event",
    "IllegalTransition",
    "State",
    "Transition",
    "TransitionError",
    "UndefinedTransition",
    "allowed_events",
    "has_active_work",
    "illegal_transitions",
    "next_state",
    "transitions",
]


class State(StrEnum):
    Submitted = "Submitted"
    Up = "Up"
    Configuring = "Configuring"
    Restarting = "Restarting"
    Stopping = "Stopping"
    Stopped = "Stopped"
    Starting = "Starting"
    Deleting = "Deleting"
    Deleted = "Deleted"
    Error = "Error"


class Event(StrEnum):
    Create = "Create"
    Created = "Created"
    Update = "Update"
    Updated = "Updated"
    Restart = "Restart"
    Restarted = "Restarted"
    Stop = "Stop"
    Stopped = "Stopped"
    Start = "Start"
    Started = "Started"
    Delete = "Delete"
    Deleted = "Deleted"
    Error = "Error"
    Recovered = "Recovered"


S, E = State, Event

#: The state of a new instance; ``next_state(INITIAL_STATE, Event.Create)`` is the creation rule.
INITIAL_STATE = S.Submitted
TERMINAL_STATES: frozenset[State] = frozenset({S.Deleted})
#: States in which the data plane has work in flight (``has_active_work`` is true).
ACTIVE_WORK_STATES: frozenset[State] = frozenset(
    {S.Submitted, S.Configuring, S.Restarting, S.Stopping, S.Starting, S.Deleting}
)
#: States with no work in flight: Up, Stopped, Error and Deleted.
SETTLED_STATES: frozenset[State] = frozenset(State) - ACTIVE_WORK_STATES
#: Events a user (or the reconciler retrying) asks for.
REQUESTS: frozenset[Event] = frozenset({E.Create, E.Update, E.Restart, E.Stop, E.Start, E.Delete})
#: Events the data plane reports.
REPORTS: frozenset[Event] = frozenset(Event) - REQUESTS


class TransitionError(HowdahError):
    """An event the state machine refuses; ``state`` and ``event`` say which."""

    def __init__(self, state: State, event: Event, message: str) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


class IllegalTransition(TransitionError):
    """The state forbids this request (Stop while Stopped), or the instance is deleted."""


class UndefinedTransition(TransitionError):
    """No rule at all: a data-plane report that matches no work of this state."""


@dataclass(frozen=True, slots=True)
class Transition:
    """One rule: ``event`` in ``source`` leads to ``target``, or to ``target_if_restart`` when the change needs
    a Postgres restart (only Update rules differ)."""

    source: State
    event: Event
    target: State
    target_if_restart: State

    def resolve(self, *, restart_needed: bool) -> State:
        return self.target_if_restart if restart_needed else self.target


def _rule(source: State, event: Event, target: State, if_restart: State | None = None) -> Transition:
    return Transition(source, event, target, target if if_restart is None else if_restart)


_NON_TERMINAL = [s for s in State if s not in TERMINAL_STATES]

_RULES: tuple[Transition, ...] = (
    # Creation.
    _rule(S.Submitted, E.Create, S.Submitted),
    _rule(S.Submitted, E.Created, S.Up),
    _rule(S.Submitted, E.Update, S.Submitted),
    # Running.
    _rule(S.Up, E.Update, S.Configuring, S.Restarting),
    _rule(S.Up, E.Restart, S.Restarting),
    _rule(S.Up, E.Stop, S.Stopping),
    *(_rule(S.Up, report, S.Up) for report in (E.Created, E.Updated, E.Restarted, E.Started, E.Recovered)),
    # Reconfiguring and restarting: either report completes the work.
    _rule(S.Configuring, E.Update, S.Configuring, S.Restarting),
    _rule(S.Configuring, E.Updated, S.Up),
    _rule(S.Configuring, E.Restarted, S.Up),
    _rule(S.Restarting, E.Update, S.Restarting),
    _rule(S.Restarting, E.Restarted, S.Up),
    _rule(S.Restarting, E.Updated, S.Up),
    # Stopping and starting.
    _rule(S.Stopping, E.Update, S.Stopping),
    _rule(S.Stopping, E.Stopped, S.Stopped),
    _rule(S.Stopped, E.Update, S.Stopped),
    _rule(S.Stopped, E.Stopped, S.Stopped),
    _rule(S.Stopped, E.Start, S.Starting),
    _rule(S.Starting, E.Update, S.Starting),
    _rule(S.Starting, E.Started, S.Up),
    # Deletion: accepted from every non-terminal state, and again while deleting.
    *(_rule(s, E.Delete, S.Deleting) for s in _NON_TERMINAL),
    _rule(S.Deleting, E.Deleted, S.Deleted),
    # Errors: reported from every non-terminal state; left by Recovered or by retrying a request.
    *(_rule(s, E.Error, S.Error) for s in _NON_TERMINAL),
    _rule(S.Error, E.Recovered, S.Up),
    _rule(S.Error, E.Create, S.Submitted),
    _rule(S.Error, E.Update, S.Configuring, S.Restarting),
    _rule(S.Error, E.Restart, S.Restarting),
    _rule(S.Error, E.Stop, S.Stopping),
    _rule(S.Error, E.Start, S.Starting),
)

_TABLE: Mapping[tuple[State, Event], Transition] = MappingProxyType({(r.source, r.event): r for r in _RULES})
assert len(_TABLE) == len(_RULES), "two rules for one (state, event)"


def _illegal_reason(state: State, event: Event) -> str | None:
    """Why a request without a rule is refused (None: it has a rule, or it is a report)."""
    if state in TERMINAL_STATES:
        return "the instance is deleted"
    if event not in REQUESTS or (state, event) in _TABLE:
        return None
    if event is E.Create:
        return "the instance already exists"
    if state is S.Deleting:
        return "the instance is being deleted"
    if state is S.Stopped:
        return "it is already stopped" if event is E.Stop else "it is stopped; start it instead"
    if state is S.Up:  # only Start is refused here
        return "it is already running"
    return f"another operation is in progress; retry once it is {S.Up} or {S.Stopped}"


_ILLEGAL: Mapping[tuple[State, Event], str] = MappingProxyType(
    {
        (state, event): reason
        for state in State
        for event in Event
        if (reason := _illegal_reason(state, event)) is not None
    }
)


def transitions() -> list[Transition]:
    """Every rule, one per accepted (state, event) pair."""
    return list(_RULES)


def illegal_transitions() -> dict[tuple[State, Event], str]:
    """Every refused (state, event) pair with the reason given in its error. Pairs in neither this nor
    :func:`transitions` are undefined."""
    return dict(_ILLEGAL)


def next_state(state: State | str, event: Event | str, *, restart_needed: bool = False) -> State:
    """The state ``event`` leads to from ``state``.

    ``restart_needed`` matters only for Update from Up, Configuring or Error: pass
    ``restart.restart_reasons(desired, actual, desired_settings, actual_settings, contexts)`` there.
    Raises :class:`IllegalTransition` or :class:`UndefinedTransition`; a value that is no state or event at all
    raises :class:`ValueError`.
    """
    state, event = State(state), Event(event)
    rule = _TABLE.get((state, event))
    if rule is not None:
        return rule.resolve(restart_needed=restart_needed)
    reason = _ILLEGAL.get((state, event))
    if reason is not None:
        raise IllegalTransition(state, event, f"{event} is not allowed while the instance is {state}: {reason}")
    raise UndefinedTransition(
        state, event, f"no transition for event {event} in state {state}: it matches no work in flight"
    )


def has_active_work(state: State | str) -> bool:
    """Whether the data plane has work in flight for an instance in ``state``."""
    return State(state) in ACTIVE_WORK_STATES


def allowed_events(state: State | str) -> list[Event]:
    """The events accepted in ``state``, in declaration order (for hints in messages and the CLI)."""
    state = State(state)
    return [event for event in Event if (state, event) in _TABLE]
