"""A first durable workflow: run `./dev howdah up --app examples.hello:app`, then start it from SQL or Python.

./dev howdah workflow list
psql "$(./dev howdah db url)" -c "SELECT * FROM howdah.start_workflow('greet', '{\"name\": \"Ada\"}')"
"""

from __future__ import annotations

from typing import Any

from howdah.durable import DurableApp, WorkflowContext

app = DurableApp()


def look_up(name: str) -> str:
    return name.strip().title() or "World"


@app.workflow()
async def greet(ctx: WorkflowContext, args: dict[str, Any]) -> str:
    name = await ctx.step("look up", look_up, args.get("name", "world"))
    await ctx.sleep(float(args.get("pause", 1)))  # durable: survives a restart, frees the worker meanwhile
    answer = await ctx.wait_for_signal("reply", timeout=float(args.get("wait", 0))) if args.get("wait") else None
    return await ctx.step("greet", lambda: f"Hello, {name}!" + (f" You said {answer!r}." if answer else ""))
