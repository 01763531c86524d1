"""The official ``pgmq`` Python client, unchanged, against Howdah's schema (no extension installed)."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pgmq import Message, PGMQueue
from psycopg.conninfo import conninfo_to_dict

pytestmark = pytest.mark.filterwarnings("ignore:list_queues\\(\\) now returns:UserWarning")


@pytest.fixture(scope="module")
def client(db_url: str) -> Iterator[PGMQueue]:
    params = conninfo_to_dict(db_url)
    queue = PGMQueue(
        host=str(params.get("host", "localhost")),
        port=str(params.get("port", "5432")),
        username=str(params.get("user", "postgres")),
        password=str(params.get("password", "postgres")),
        database=str(params.get("dbname", "postgres")),
        init_extension=False,
        pool_size=2,
    )
    try:
        yield queue
    finally:
        queue.close()


def _ids(messages: Any) -> list[int]:
    return [m.msg_id for m in messages]


def test_queue_management(client: PGMQueue, queue_name: str) -> None:
    client.create_queue(queue_name)
    client.create_queue(f"{queue_name}_u", unlogged=True)
    client.create_partitioned_queue(f"{queue_name}_p", partition_interval=100, retention_interval=1000)
    assert client.validate_queue_name(queue_name)
    with pytest.raises(psycopg.Error):
        client.validate_queue_name("x" * 48)
    listed = {q.queue_name: q for q in client.list_queues()}
    assert listed[queue_name].is_unlogged is False
    assert listed[f"{queue_name}_u"].is_unlogged is True
    assert listed[f"{queue_name}_p"].is_partitioned is True
    for name in (queue_name, f"{queue_name}_u", f"{queue_name}_p"):
        assert client.drop_queue(name) is True
    assert client.drop_queue(queue_name) is False
    assert queue_name not in {q.queue_name for q in client.list_queues()}


def test_send_read_archive_delete(client: PGMQueue, queue_name: str) -> None:
    client.create_queue(queue_name)
    first = client.send(queue_name, {"n": 1})
    second = client.send(queue_name, {"n": 2}, headers={"trace": "abc"})
    delayed = client.send(queue_name, {"n": 3}, delay=3600)
    at = client.send(queue_name, {"n": 4}, delay=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    both = client.send(queue_name, {"n": 5}, headers={"h": 1}, delay=0)
    batch = client.send_batch(queue_name, [{"b": 1}, {"b": 2}], headers=[{"x": 1}, {"x": 2}])
    later = client.send_batch(queue_name, [{"b": 3}], delay=3600)
    assert [first, second, delayed, at, both] == [1, 2, 3, 4, 5]
    assert batch == [6, 7] and later == [8]

    one = client.read(queue_name, vt=30)
    assert isinstance(one, Message) and one.msg_id == 1 and one.message == {"n": 1} and one.read_ct == 1
    many = client.read(queue_name, vt=30, qty=10)
    assert _ids(many) == [2, 4, 5, 6, 7]
    assert many[0].headers == {"trace": "abc"}
    assert client.read(queue_name, vt=30, qty=5) == []

    # set_vt with seconds and with a timestamp, one id and many.
    assert client.set_vt(queue_name, 1, 0).msg_id == 1
    assert _ids(client.set_vt(queue_name, [2, 4], dt.datetime.now(dt.UTC))) == [2, 4]
    assert _ids(client.read_with_poll(queue_name, vt=30, qty=5, max_poll_seconds=1, poll_interval_ms=10)) == [1, 2, 4]
    assert _ids(client.read(queue_name, vt=30, qty=5, conditional={"b": 1})) == []
    client.set_vt(queue_name, [6], 0)
    assert _ids(client.read(queue_name, vt=30, qty=5, conditional={"b": 1})) == [6]

    assert client.archive(queue_name, 1) is True
    assert client.archive(queue_name, 1) is False
    assert sorted(client.archive_batch(queue_name, [2, 4, 99])) == [2, 4]
    assert client.delete(queue_name, 5) is True
    assert client.delete(queue_name, 5) is False
    assert sorted(client.delete_batch(queue_name, [6, 7, 99])) == [6, 7]

    client.set_vt(queue_name, [3, 8], 0)
    popped = client.pop(queue_name)
    assert popped is not None and popped.msg_id == 3

    metrics = client.metrics(queue_name)
    assert (metrics.queue_name, metrics.queue_length, metrics.queue_visible_length) == (queue_name, 1, 1)
    assert metrics.total_messages == 8
    assert queue_name in {m.queue_name for m in client.metrics_all()}
    assert client.purge(queue_name) == 1
    assert client.metrics(queue_name).queue_length == 0
    client.detach_archive(queue_name)
    client.drop_queue(queue_name)


def test_missing_queue_is_a_clear_error(client: PGMQueue, queue_name: str) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable, match=f'queue "{queue_name}" does not exist'):
        client.send(queue_name, {"n": 1})
    with pytest.raises(psycopg.errors.UndefinedTable):
        client.read(queue_name)


def test_fifo(client: PGMQueue, queue_name: str) -> None:
    client.create_queue(queue_name)
    client.create_fifo_index(queue_name)
    client.create_fifo_indexes_all()
    groups = ["A", "A", "B", "B", "C"]
    client.send_batch(queue_name, [{"i": i} for i in range(5)], headers=[{"x-pgmq-group": g} for g in groups])
    assert _ids(client.read_grouped(queue_name, vt=30, qty=3)) == [1, 2, 3]
    assert _ids(client.read_grouped_rr(queue_name, vt=30, qty=3)) == [5]  # A and B are in flight
    client.set_vt(queue_name, [1, 2, 3, 4, 5], 0)
    assert _ids(client.read_grouped_rr(queue_name, vt=30, qty=4)) == [1, 3, 5, 2]
    client.set_vt(queue_name, [1, 2, 3, 4, 5], 0)
    assert _ids(client.read_grouped_with_poll(queue_name, vt=30, qty=2, max_poll_seconds=1, poll_interval_ms=10)) == [
        1,
        2,
    ]
    assert _ids(
        client.read_grouped_rr_with_poll(queue_name, vt=30, qty=5, max_poll_seconds=1, poll_interval_ms=10)
    ) == [3, 5, 4]
    client.drop_queue(queue_name)


def test_topics(client: PGMQueue, queue_name: str) -> None:
    logs, errors = f"{queue_name}_logs", f"{queue_name}_errors"
    client.create_queue(logs)
    client.create_queue(errors)
    assert client.validate_routing_key("app.db.error")
    assert client.validate_topic_pattern("app.#")
    assert client.validate_routing_key("bad..key") is False
    assert client.validate_topic_pattern("bad.**") is False
    client.bind_topic("app.#", logs)
    client.bind_topic("*.*.error", errors)
    bound = {(b.pattern, b.queue_name) for b in client.list_topic_bindings()}
    assert {("app.#", logs), ("*.*.error", errors)} <= bound
    assert [b.pattern for b in client.list_topic_bindings(queue_name=errors)] == ["*.*.error"]
    routes = {(r.pattern, r.queue_name) for r in client.test_routing("app.db.error")}
    assert {("app.#", logs), ("*.*.error", errors)} <= routes
    assert client.send_topic("app.db.error", {"e": 1}) == 2
    assert client.send_topic("app.db.info", {"e": 2}, headers={"h": 1}) == 1
    assert client.send_topic("app.db.error", {"e": 3}, delay=3600) == 2
    assert client.send_topic("x.y.error", {"e": 4}, headers={"h": 2}, delay=0) == 1
    sent = client.send_batch_topic("app.api.error", [{"e": 5}, {"e": 6}], headers=[{"a": 1}, {"a": 2}])
    assert sorted((r.queue_name, r.msg_id) for r in sent) == [(errors, 4), (errors, 5), (logs, 4), (logs, 5)]
    assert _ids(client.read(logs, vt=30, qty=10)) == [1, 2, 4, 5]
    assert client.unbind_topic("app.#", logs) is True
    assert client.unbind_topic("app.#", logs) is False
    assert client.send_topic("app.db.info", {"e": 7}) == 0
    client.drop_queue(logs)
    client.drop_queue(errors)


def test_notifications(client: PGMQueue, queue_name: str, db_url: str) -> None:
    client.create_queue(queue_name)
    client.enable_notify(queue_name, throttle_interval_ms=0)
    client.update_notify(queue_name, throttle_interval_ms=10)
    (throttle,) = [t for t in client.list_notify_throttles() if t.queue_name == queue_name]
    assert throttle.throttle_interval_ms == 10
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "pgmq.q_{queue_name}.INSERT"')
        client.send(queue_name, {"n": 1})
        got = list(listener.notifies(timeout=10, stop_after=1))
    assert [(n.channel, n.payload) for n in got] == [(f"pgmq.q_{queue_name}.INSERT", "")]
    client.disable_notify(queue_name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert queue_name not in {t.queue_name for t in client.list_notify_throttles()}
    client.drop_queue(queue_name)
