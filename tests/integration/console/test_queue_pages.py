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


async def test_the_home_page_charts_queue_depth_over_the_last_hour_for_the_platform_admin(console: Console) -> None:
    async with console.pool.connection() as conn:
        await conn.execute("DELETE FROM control.queue_depth_samples")
    platform = await console.browser("platform")
    empty = await platform.get("/instances")
    assert "Queue depth, last hour" in empty.text and "No sample yet" in empty.text
    async with console.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO control.queue_depth_samples VALUES "
            "(date_trunc('minute', now()) - interval '2 hours', 'qa', 100), "  # older than the chart
            "(date_trunc('minute', now()) - interval '30 minutes', 'qa', 8), "
            "(date_trunc('minute', now()) - interval '30 minutes', 'qb', 2), "
            "(date_trunc('minute', now()), 'qa', 3), (date_trunc('minute', now()), 'qb', 4)"
        )
    home = await platform.get("/instances")
    assert (
        "Messages queued over the last hour: 7 in the latest sample, at most 10 (2 samples, one a minute)" in home.text
    )
    points = re.search(r'<polyline points="([^"]+)" class="depth-line">', home.text)
    assert points and len(points.group(1).split()) == 2
    for who in ("acme-admin", "acme-member"):  # queues serve every org: no org role sees them
        page = await (await console.browser(who)).get("/instances")
        assert page.status_code == 200 and "Queue depth" not in page.text and "depth-line" not in page.text
