"""The Queues page's dead-letter depths and the home page's chart of queue depth over the last hour."""

from __future__ import annotations

import re
import uuid

from howdah.queue import AsyncQueue, ConsumeOptions

from .conftest import Console


def _row(html: str, queue: str) -> str:
    found = re.search(rf'<tr><td><a href="/queues/{queue}">{queue}</a></td>.*?</tr>', html)
    assert found, f"no row for {queue}"
    return found.group(0)


async def test_each_queue_shows_its_dead_letter_queues_depth(console: Console) -> None:
    source = f"src_{uuid.uuid4().hex[:8]}"
    dlq = ConsumeOptions.build(source).dead_letter_queue  # where the consumer dead-letters
    assert dlq is not None
    lonely = f"lonely_{uuid.uuid4().hex[:8]}"
    async with console.pool.connection() as conn:
        queue = AsyncQueue(conn)
        for name in (source, dlq, lonely):
            await queue.create(name)
        ids = [await queue.send(source, {"n": n}) for n in range(3)]
        await queue.send(source, {"n": 3})
        await conn.execute("SELECT pgmq.howdah_dead_letter(%s, %s, %s, 'read too often')", (source, ids, dlq))
    platform = await console.browser("platform")
    page = await platform.get("/queues")
    assert page.status_code == 200
    assert f'<a href="/queues/{dlq}" data-dlq>3 in {dlq}</a>' in _row(page.text, source)
    assert "<td>1</td>" in _row(page.text, source)  # the source keeps the one not dead-lettered
    assert f"dead-letter queue of {source}" in _row(page.text, dlq)
    assert _row(page.text, lonely).endswith("<td>—</td></tr>")
