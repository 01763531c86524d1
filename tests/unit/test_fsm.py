"""The instance state machine: every (state, event) pair against a hand-written grid, plus random lifecycles."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from howdah.control.fsm import (
    ACTIVE_WORK_STATES,
    INITIAL_STATE,
    REPORTS,
    REQUESTS,
    SETTLED_STATES,
    TERMINAL_STATES,
    Event,
    IllegalTransition,
    State,
    Transition,
    TransitionError,
    UndefinedTransition,
    allowed_events,
    has_active_work,
    illegal_transitions,
    next_state,
    transitions,
)
from howdah.errors import HowdahError

# The expected outcome of every pair, written independently of the module's table. A cell is the next state,
# "A|B" for an Update that goes to A without a restart and to B with one, "I" for IllegalTransition and "U" for
# UndefinedTransition.
EVENTS = "Create Created Update Updated Restart Restarted Stop Stopped Start Started Delete Deleted Error Recovered"
GRID = """
Submitted   Submitted Up Submitted              U  I          U  I        U       I        U  Deleting U       Error U
Up          I         Up Configuring|Restarting Up Restarting Up Stopping U       I        Up Deleting U       Error Up
Configuring I         U  Configuring|Restarting Up I          Up I        U       I        U  Deleting U       Error U
Restarting  I         U  Restarting             Up I          Up I        U       I        U  Deleting U       Error U
Stopping    I         U  Stopping               U  I          U  I        Stopped I        U  Deleting U       Error U
Stopped     I         U  Stopped                U  I          U  I        Stopped Starting U  Deleting U       Error U
Starting    I         U  Starting               U  I          U  I        U       I        Up Deleting U       Error U
Deleting    I         U  I                      U  I          U  I        U       I        U  Deleting Deleted Error U
Deleted     I         I  I                      I  I          I  I        I       I        I  I        I       I     I
Error       Submitted U  Configuring|Restarting U  Restarting U  Stopping U       Starting U  Deleting U       Error Up
"""


def _expected() -> dict[tuple[State, Event], str]:
    events = [Event(name) for name in EVENTS.split()]
    table: dict[tuple[State, Event], str] = {}
    for line in GRID.strip().splitlines():
        state, *cells = line.split()
        assert len(cells) == len(events), line
        for event, cell in zip(events, cells, strict=True):
            table[State(state), event] = cell
    return table


EXPECTED = _expected()
PAIRS = sorted(EXPECTED, key=lambda pair: (list(State).index(pair[0]), list(Event).index(pair[1])))
COMPLETION = {
    State.Submitted: Event.Created,
    State.Configuring: Event.Updated,
    State.Restarting: Event.Restarted,
    State.Stopping: Event.Stopped,
    State.Starting: Event.Started,
    State.Deleting: Event.Deleted,
}


def test_the_grid_covers_every_pair() -> None:
    assert set(EXPECTED) == {(s, e) for s in State for e in Event}
    assert len(EXPECTED) == 140


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s}+{e}" for s, e in PAIRS])
def test_every_pair(state: State, event: Event) -> None:
    cell = EXPECTED[state, event]
    for restart_needed in (False, True):
        if cell in ("I", "U"):
            expected_error = IllegalTransition if cell == "I" else UndefinedTransition
            with pytest.raises(TransitionError) as caught:
                next_state(state, event, restart_needed=restart_needed)
            assert type(caught.value) is expected_error
            assert isinstance(caught.value, HowdahError)
            assert (caught.value.state, caught.value.event) == (state, event)
            message = str(caught.value)
            assert str(state) in message and str(event) in message
        else:
            without, _, with_restart = cell.partition("|")
            expected = State(with_restart if restart_needed and with_restart else without)
            assert next_state(state, event, restart_needed=restart_needed) is expected


def test_the_published_tables_match_the_grid() -> None:
    rules = {(t.source, t.event): t for t in transitions()}
    assert len(rules) == len(transitions()) == 49
    illegal = illegal_transitions()
    assert len(illegal) == 43
    assert not rules.keys() & illegal.keys()
    for pair, cell in EXPECTED.items():
        if cell == "I":
            assert pair in illegal and pair not in rules
        elif cell == "U":
            assert pair not in illegal and pair not in rules
        else:
            without, _, with_restart = cell.partition("|")
            assert rules[pair] == Transition(pair[0], pair[1], State(without), State(with_restart or without))


def test_only_updates_depend_on_a_restart() -> None:
    branching = {(t.source, t.event) for t in transitions() if t.target != t.target_if_restart}
    assert branching == {(State.Up, Event.Update), (State.Configuring, Event.Update), (State.Error, Event.Update)}


def test_illegal_means_a_refused_request_and_undefined_an_unmatched_report() -> None:
    for (state, event), cell in EXPECTED.items():
        if cell == "I":
            assert event in REQUESTS or state in TERMINAL_STATES
        if cell == "U":
            assert event in REPORTS and state not in TERMINAL_STATES


@pytest.mark.parametrize(
    ("state", "event", "message"),
    [
        (State.Stopped, Event.Stop, "Stop is not allowed while the instance is Stopped: it is already stopped"),
        (State.Stopped, Event.Restart, "Restart is not allowed while the instance is Stopped: it is stopped; start"),
        (State.Up, Event.Start, "Start is not allowed while the instance is Up: it is already running"),
        (State.Up, Event.Create, "Create is not allowed while the instance is Up: the instance already exists"),
        (State.Configuring, Event.Stop, "another operation is in progress; retry once it is Up or Stopped"),
        (State.Deleting, Event.Update, "Update is not allowed while the instance is Deleting: the instance is being"),
        (State.Deleted, Event.Delete, "Delete is not allowed while the instance is Deleted: the instance is deleted"),
        (State.Stopped, Event.Started, "no transition for event Started in state Stopped"),
    ],
)
def test_messages_fit_an_http_409(state: State, event: Event, message: str) -> None:
    with pytest.raises(TransitionError, match=message.replace("(", r"\(")):
        next_state(state, event)


def test_strings_are_accepted_and_nonsense_is_a_value_error() -> None:
    assert next_state("Up", "Stop") is State.Stopping
    assert next_state(INITIAL_STATE, Event.Create) is State.Submitted
    with pytest.raises(ValueError):
        next_state("Running", "Stop")
    with pytest.raises(ValueError):
        next_state("Up", "Explode")


def test_values_are_the_names() -> None:
    assert [s.value for s in State] == [s.name for s in State]
    assert [e.value for e in Event] == [e.name for e in Event]
    assert len(State) == 10 and len(Event) == 14


def test_active_work_is_false_exactly_when_settled() -> None:
    settled = {State.Up, State.Stopped, State.Error, State.Deleted}
    assert settled == SETTLED_STATES
    assert set(State) - settled == ACTIVE_WORK_STATES
    for state in State:
        assert has_active_work(state) is (state not in settled)
    assert has_active_work("Configuring") and not has_active_work("Up")


def test_allowed_events() -> None:
    assert allowed_events(State.Deleted) == []
    assert allowed_events("Stopped") == [Event.Update, Event.Stopped, Event.Start, Event.Delete, Event.Error]
    for state in State:
        assert allowed_events(state) == [e for e in Event if EXPECTED[state, e] not in ("I", "U")]


def _reachable(start: State) -> set[State]:
    seen, todo = {start}, deque([start])
    while todo:
        state = todo.popleft()
        for event in Event:
            for restart_needed in (False, True):
                try:
                    following = next_state(state, event, restart_needed=restart_needed)
                except TransitionError:
                    continue
                if following not in seen:
                    seen.add(following)
                    todo.append(following)
    return seen


def test_every_state_is_reachable_from_submitted() -> None:
    assert _reachable(State.Submitted) == set(State)


@pytest.mark.parametrize("state", [s for s in State if s not in TERMINAL_STATES])
def test_every_live_state_can_get_back_up_and_can_be_deleted(state: State) -> None:
    reachable = _reachable(state)
    assert State.Up in reachable and State.Deleted in reachable


def test_deleted_is_absorbing() -> None:
    assert _reachable(State.Deleted) == {State.Deleted}


# ------------------------------------------------------------------------------------------ random lifecycles
class InstanceLifecycle(RuleBasedStateMachine):
    """Users send requests; a simulated data plane completes, fails, recovers and redelivers reports late."""

    def __init__(self) -> None:
        super().__init__()
        self.state = next_state(INITIAL_STATE, Event.Create)
        self.pending: Event | None = COMPLETION[self.state]  # the report that completes the work in flight

    def _moved(self, state: State) -> None:
        self.state = state
        self.pending = COMPLETION.get(state)

    @rule(event=st.sampled_from(sorted(REQUESTS)), restart_needed=st.booleans())
    def request(self, event: Event, restart_needed: bool) -> None:
        try:
            after = next_state(self.state, event, restart_needed=restart_needed)
        except IllegalTransition:
            assert event is not Event.Delete or self.state in TERMINAL_STATES
            return
        # A request is never undefined (it would raise UndefinedTransition here) and never claims work is done.
        assert after not in {State.Up, State.Error, State.Deleted}
        self._moved(after)

    @precondition(lambda self: self.pending is not None)
    @rule()
    def data_plane_completes(self) -> None:
        assert self.pending is not None
        after = next_state(self.state, self.pending)
        assert after in SETTLED_STATES
        self._moved(after)

    @precondition(lambda self: self.state in (State.Up, State.Stopped))
    @rule(report=st.sampled_from([*COMPLETION.values(), Event.Recovered]))
    def a_late_copy_of_a_report_arrives(self, report: Event) -> None:
        # Any completion may be a copy redelivered after a lease expired: it must leave a settled state alone.
        try:
            after = next_state(self.state, report)
        except UndefinedTransition:
            return
        assert after is self.state, f"a repeated {report} moved a {self.state} instance to {after}"

    @precondition(lambda self: self.state not in TERMINAL_STATES)
    @rule()
    def data_plane_fails(self) -> None:
        self._moved(next_state(self.state, Event.Error))
        assert self.state is State.Error

    @precondition(lambda self: self.state is State.Error)
    @rule()
    def data_plane_recovers(self) -> None:
        self._moved(next_state(self.state, Event.Recovered))
        assert self.state is State.Up

    @rule(event=st.sampled_from(list(Event)), restart_needed=st.booleans())
    def any_event(self, event: Event, restart_needed: bool) -> None:
        before = self.state
        try:
            after = next_state(before, event, restart_needed=restart_needed)
        except TransitionError:
            return
        assert before not in TERMINAL_STATES
        self._moved(after)

    @invariant()
    def active_work_matches_the_state(self) -> None:
        assert has_active_work(self.state) is (self.state not in {State.Up, State.Stopped, State.Error, State.Deleted})
        assert (self.pending is not None) is has_active_work(self.state)

    @invariant()
    def deleted_is_absorbing(self) -> None:
        if self.state is State.Deleted:
            for event in Event:
                with pytest.raises(IllegalTransition):
                    next_state(self.state, event, restart_needed=True)

    @invariant()
    def delete_is_always_accepted_and_finishes(self) -> None:
        if self.state not in TERMINAL_STATES:
            assert next_state(self.state, Event.Delete) is State.Deleting
            assert next_state(State.Deleting, Event.Deleted) is State.Deleted

    @invariant()
    def errors_are_reported_from_anywhere_live_and_escapable(self) -> None:
        if self.state not in TERMINAL_STATES:
            assert next_state(self.state, Event.Error) is State.Error
        if self.state is State.Error:
            assert next_state(self.state, Event.Recovered) is State.Up


InstanceLifecycle.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestInstanceLifecycle = InstanceLifecycle.TestCase
