"""A chat agent with memory, tools and human approval, ported from llama-index-workflows.

``docs/porting.md`` shows the original and each change. ``ChatAgent`` keeps the conversation
in ``ctx.store["history"]`` (a list of ``ChatTurn`` models), and every message is one run:
runs given the same ``Context`` (in-process) or ``context=`` the previous run (distributed)
share that memory. Each turn asks ``chat_model`` — a rule-based stand-in for an LLM, so the
example needs no network — for a reply or a tool call; the tools (``lookup_order``,
``issue_refund``) and the model are Baton tools called with ``ctx.call_tool``, so each call is
a Celery task of its own when distributed. A refund waits for a human's ``RefundDecision``.

``python -m examples.chat_agent`` runs :func:`main` in-process; :func:`main_distributed`
holds the same conversation on workers. Both print the same transcript.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from workflows import Context, Retry, Workflow, step, tool
from workflows.events import (
    Event,
    HumanResponseEvent,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
)

if TYPE_CHECKING:
    from app.client import Client


class ChatTurn(BaseModel):
    """One message of the conversation."""

    role: str  # "user", "assistant" or "tool"
    text: str


class UserMessage(StartEvent):
    """A run's input: the user's next message."""

    message: str


class Think(Event):
    """Ask the model what to do next."""


class ToolCall(Event):
    """The model asked for a tool."""

    tool: str
    args: dict[str, Any]


class ToolUsed(Event):  # progress, written to the stream
    """A tool's output, as the model will read it."""

    tool: str
    output: str


class RefundRequested(InputRequiredEvent):
    """Asks a human to approve a refund."""

    order_id: str


class RefundDecision(HumanResponseEvent):
    """A human's answer to ``RefundRequested``."""

    approved: bool


# --- tools: each one a Celery task of its own when distributed -----------------------------
ORDERS = {"A100": {"item": "kettle", "price": 25.0, "status": "shipped"}}


@tool(queue="tools", timeout=10, retry=Retry(max_attempts=3, delay=0.2))
async def lookup_order(order_id: str) -> dict[str, Any]:
    """Look an order up."""
    return {"order_id": order_id, **ORDERS[order_id]}


@tool(queue="tools", timeout=10)  # no retry: a payment API would need an idempotency key
async def issue_refund(order_id: str) -> dict[str, Any]:
    """Refund an order in full."""
    return {"order_id": order_id, "refunded": ORDERS[order_id]["price"]}


# --- the "LLM": rule-based and deterministic, so the example needs no network -------------
ORDER_ID = re.compile(r"\b[A-Z]\d{3}\b")


@tool(queue="llm", timeout=30, retry=Retry(max_attempts=3, delay=0.5))
async def chat_model(messages: list[dict[str, str]]) -> dict[str, Any]:
    """Reply to the conversation, or ask for a tool call."""
    last = messages[-1]
    if last["role"] == "tool":
        return {"reply": describe(json.loads(last["text"]))}
    said = " ".join(m["text"] for m in messages if m["role"] == "user")
    orders, names = ORDER_ID.findall(said), re.findall(r"I'm (\w+)", said)
    if "refund" in last["text"] and orders:
        return {"tool": "issue_refund", "args": {"order_id": orders[-1]}}
    if ORDER_ID.search(last["text"]):
        return {"tool": "lookup_order", "args": {"order_id": orders[-1]}}
    if "Who am I" in last["text"]:
        return {"reply": f"You are {names[-1]}." if names else "I don't know yet."}
    return {"reply": f"Hello {names[-1]}!" if names else "Hello!"}


def describe(output: dict[str, Any]) -> str:
    """A tool's output in words."""
    if "status" in output:
        return "Order {order_id} ({item}, ${price:.2f}) is {status}.".format(**output)
    if output["refunded"]:
        return "Refunded ${refunded:.2f} for order {order_id}.".format(**output)
    return "Order {order_id} was not refunded.".format(**output)


# --- the workflow ---------------------------------------------------------------------------
class ChatAgent(Workflow):
    """One turn of the conversation: think, act (tools, approval), think again, reply."""

    @step
    async def listen(self, ctx: Context, ev: UserMessage) -> Think:
        await remember(ctx, ChatTurn(role="user", text=ev.message))
        return Think()

    @step
    async def think(self, ctx: Context, ev: Think) -> ToolCall | StopEvent:
        history = await ctx.store.get("history")
        decision = await ctx.call_tool("chat_model", messages=[t.model_dump() for t in history])
        if "tool" in decision:
            return ToolCall(tool=decision["tool"], args=decision["args"])
        await remember(ctx, ChatTurn(role="assistant", text=decision["reply"]))
        return StopEvent(result=decision["reply"])

    @step
    async def act(self, ctx: Context, ev: ToolCall) -> Think:
        approved = True
        if ev.tool == "issue_refund":  # a human approves every refund
            request = RefundRequested(**ev.args)
            approved = (await ctx.wait_for_event(RefundDecision, waiter_event=request)).approved
        if approved:
            output = await ctx.call_tool(ev.tool, **ev.args)
        else:
            output = {**ev.args, "refunded": 0.0}
        ctx.write_event_to_stream(ToolUsed(tool=ev.tool, output=json.dumps(output)))
        await remember(ctx, ChatTurn(role="tool", text=json.dumps(output)))
        return Think()


async def remember(ctx: Context, turn: ChatTurn) -> None:
    """Append a turn to the conversation's history."""
    history = await ctx.store.get("history", default=[])
    await ctx.store.set("history", [*history, turn])


# --- a conversation -------------------------------------------------------------------------
async def main() -> None:
    """The conversation in-process: the same driver as with llama-index-workflows."""
    agent = ChatAgent(timeout=60)
    ctx = Context(agent)  # the conversation's memory, across runs
    for message in ["Hi, I'm Ada.", "Where is order A100?"]:
        print("user: ", message)
        print("agent:", await agent.run(ctx=ctx, message=message))

    print("user:  Please refund it.")
    handler = agent.run(ctx=ctx, message="Please refund it.")
    async for ev in handler.stream_events():
        if isinstance(ev, ToolUsed):
            print("tool: ", ev.tool, ev.output)
        if isinstance(ev, RefundRequested):
            print("human: approves the refund of", ev.order_id)
            handler.ctx.send_event(RefundDecision(approved=True))
    print("agent:", await handler)

    saved = json.dumps(handler.ctx.to_dict())  # to a file or a database
    agent = ChatAgent(timeout=60)  # later, in another process
    ctx = Context.from_dict(agent, json.loads(saved))
    print("user:  Who am I?")
    print("agent:", await agent.run(ctx=ctx, message="Who am I?"))


def main_distributed(client: Client) -> None:
    """The same conversation on workers: each run starts with the store of the one before."""
    handle = None
    for message in ["Hi, I'm Ada.", "Where is order A100?"]:
        print("user: ", message)
        handle = client.submit(ChatAgent, message=message, context=handle, timeout=60)
        print("agent:", handle.result(timeout=60))

    print("user:  Please refund it.")
    handle = client.submit(ChatAgent, message="Please refund it.", context=handle, timeout=60)
    for ev in handle.stream_events(timeout=60):
        if isinstance(ev, ToolUsed):
            print("tool: ", ev.tool, ev.output)
        if isinstance(ev, RefundRequested):
            print("human: approves the refund of", ev.order_id)
            handle.send_event(RefundDecision(approved=True))
    print("agent:", handle.result(timeout=60))

    saved = json.dumps(handle.context())  # to a file or a database
    print("user:  Who am I?")
    handle = client.submit(ChatAgent, message="Who am I?", context=json.loads(saved), timeout=60)
    print("agent:", handle.result(timeout=60))


if __name__ == "__main__":
    asyncio.run(main())
