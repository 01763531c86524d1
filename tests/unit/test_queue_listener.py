"""The pure parts of the listener's leader election: lock keys and the help channel's name."""

from __future__ import annotations

from howdah.queue._listener import (
    EMPTY_READS,
    FOLLOW_TICK,
    MAX_CHANNEL_BYTES,
    MIN_TICK,
    _Channel,
    help_channel,
    leader_key,
    lock_tag,
    member_key,
)
from howdah.queue._names import MAX_QUEUE_NAME


def test_the_help_channel_is_named_after_the_queues_and_fits_postgres() -> None:
    assert help_channel("pgmq.q_orders.INSERT") == "howdah.q_orders.help"
    longest = "pgmq.q_" + "é" * (MAX_QUEUE_NAME // 2) + ".INSERT"  # 46 bytes of name, two bytes a letter
    assert len(help_channel(longest).encode()) <= MAX_CHANNEL_BYTES
    odd = help_channel("something else")  # not PGMQ's shape: a hash, still distinct and short
    assert odd.startswith("howdah.help.") and odd != help_channel("something other")


def test_lock_keys_are_stable_distinct_and_shown_by_pg_locks_as_two_oids() -> None:
    a, b = "pgmq.q_a.INSERT", "pgmq.q_b.INSERT"
    assert leader_key(a) == leader_key(a)  # every process derives the same key
    assert len({leader_key(a), leader_key(b), member_key(a), member_key(b)}) == 4
    assert -(2**63) <= leader_key(a) < 2**63  # a bigint
    assert lock_tag(-1) == (0xFFFF_FFFF, 0xFFFF_FFFF)
    assert lock_tag(0x1_0000_0002) == (1, 2)


def test_what_a_process_listens_to_and_how_often_it_reads_while_streaming() -> None:
    ch = _Channel("pgmq.q_a.INSERT", "howdah.q_a.help", leader_key("pgmq.q_a.INSERT"), retry=1.0, read_interval=0.002)
    assert ch.wanted() == {"pgmq.q_a.INSERT", "howdah.q_a.help"}  # a follower: the queue only to tell a stream
    assert ch.tick == FOLLOW_TICK  # a follower reads every 50 ms while the queue streams
    ch.leader = True
    assert ch.wanted() == {"pgmq.q_a.INSERT"} and ch.tick == 0.002  # the leader: every read_interval
    ch.streaming = True
    assert ch.wanted() == set()  # streaming: not a listener at all, so no notification costs a transaction
    ch.read_interval = 0.0
    assert ch.tick == MIN_TICK


def _streaming(leader: bool) -> _Channel:
    ch = _Channel("pgmq.q_a.INSERT", "howdah.q_a.help", 1, retry=1.0, read_interval=0.002, leader=leader)
    ch.streaming = True
    return ch


def test_the_leader_listens_again_after_a_few_empty_reads() -> None:
    ch = _streaming(leader=True)
    assert [ch.stream_read(0) for _ in range(EMPTY_READS)] == [False] * (EMPTY_READS - 1) + [True]
    assert ch.tick == 0.002  # its pace never changes


def test_a_follower_whose_reads_find_nothing_slows_down_before_it_listens_again() -> None:
    """While the leader keeps up, a follower's reads find nothing: each one doubles its tick up to ``retry``
    (listening again at 50 ms would cost a transaction per notification of the stream), and only
    EMPTY_READS empty reads at that pace end its stream; a read that finds messages brings it back to 50 ms."""
    ch = _streaming(leader=False)
    ticks, ended = [], False
    while not ended:
        ticks.append(ch.tick)
        ended = ch.stream_read(0)
    assert ticks == [0.05, 0.1, 0.2, 0.4, 0.8] + [1.0] * EMPTY_READS
    ch.streaming, ch.slow = True, 8
    assert not ch.stream_read(3) and ch.tick == FOLLOW_TICK and ch.empties == 0
