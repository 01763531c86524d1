"""A queue worker process for the reliability tests: ``python _worker.py '<json config>'``.

It runs ``Queue(dsn).work(queue, handler, **options)`` until SIGTERM (or SIGKILL) and records what its handler
does in tables the test reads:

- ``handled`` table: one row per handled message (msg_id, worker, read_ct), written by the handler.
- ``started`` table (optional): a row written when the handler begins, before any waiting.
- ``mode``: ``record`` returns at once; ``hang`` never returns (the test kills the process);
  ``wait_go`` returns once a row exists in the ``go`` table (the test inserts it).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import psycopg
from psycopg import sql

from howdah.queue import Message, Queue


def main(config: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.WARNING, format=f"[{config['worker']}] %(levelname)s %(name)s: %(message)s")
    dsn, worker, mode = config["dsn"], config["worker"], config.get("mode", "record")
    db = psycopg.connect(dsn, autocommit=True)
    handled = sql.Identifier(config["handled"])
    started = sql.Identifier(config["started"]) if config.get("started") else None
    go = sql.Identifier(config["go"]) if config.get("go") else None

    def record(table: sql.Identifier, message: Message) -> None:
        db.execute(
            sql.SQL("INSERT INTO {} (msg_id, worker, read_ct) VALUES (%s, %s, %s)").format(table),
            (message.msg_id, worker, message.read_ct),
        )

    def handler(message: Message) -> None:
        if started is not None:
            record(started, message)
        if mode == "hang":
            while True:  # until SIGKILL
                time.sleep(1)
        if mode == "wait_go":
            assert go is not None
            deadline = time.monotonic() + 60
            while not db.execute(sql.SQL("SELECT count(*) FROM {}").format(go)).fetchone()[0]:  # type: ignore[index]
                if time.monotonic() > deadline:
                    raise TimeoutError("the test never said go")
                time.sleep(0.05)
        record(handled, message)

    with Queue(dsn, pool_size=1) as queue:
        queue.work(config["queue"], handler, **config.get("options", {}))
    db.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
