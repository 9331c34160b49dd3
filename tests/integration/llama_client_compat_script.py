"""Drive ``baton serve`` with llama-agents-client's ``WorkflowClient``, unchanged.

Runs in its own venv (llama-index-workflows installs a top-level ``workflows`` that clashes
with Baton's), started by tests/integration/test_llama_client_compat.py from outside the repo.
Usage: python llama_client_compat_script.py URL TOKEN; prints one JSON object.
"""
# mypy: ignore-errors
# (checked by the project's mypy, which sees Baton's `workflows`, not llama's)

from __future__ import annotations

import asyncio
import json
import os
import sys

# never Baton's own `workflows`, whatever the working directory or PYTHONPATH
_repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _repo]

import httpx  # noqa: E402
from llama_agents.client import WorkflowClient  # noqa: E402

from workflows.events import HumanResponseEvent, StartEvent  # noqa: E402


class Numbers(StartEvent):
    a: int
    b: int


class Label(StartEvent):
    label: str


class Answer(HumanResponseEvent):
    """Sent as {"type": "Answer", "value": {...}}: the server resolves it by class name."""

    approved: bool


async def main(url: str, token: str) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    out: dict = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        client = WorkflowClient(httpx_client=http)
        out["health"] = (await client.is_healthy()).status
        out["workflows"] = (await client.list_workflows()).workflows
        schema = await client.get_workflow_schema("AddTwice")
        out["start_fields"] = sorted(schema.start["properties"])
        graph = await client.get_workflow_graph("AddTwice")
        out["graph_nodes"] = sorted(node.id for node in graph.graph.nodes)
        events = await client.get_workflow_events_schema("AddTwice")
        out["event_titles"] = [e.get("title") for e in events.events]

        done = await client.run_workflow("AddTwice", start_event=Numbers(a=2, b=3))
        out["run"] = {"status": done.status, "type": done.result.type}
        out["run_result"] = done.result.load_event().result  # llama's StopEvent, by its name

        started = await client.run_workflow_nowait("Research", start_event={"topic": "ai"})
        stream = client.get_workflow_events(started.handler_id)
        out["stream_types"] = [event.type async for event in stream]
        out["stream_last_sequence"] = stream.last_sequence
        finished = await client.wait_for_handler(started.handler_id, poll_interval=0.05)
        out["stream_status"] = finished.status

        asking = await client.run_workflow_nowait("Approve", start_event=Label(label="compat"))
        seen = []
        async for event in client.get_workflow_events(asking.handler_id):
            seen.append(event.type)
            if "InputRequiredEvent" in (event.types or []):
                out["question"] = event.value["question"]
                sent = await client.send_event(asking.handler_id, Answer(approved=True))
                out["sent"] = sent.status
        out["hitl_types"] = seen
        answered = await client.wait_for_handler(asking.handler_id, poll_interval=0.05)
        out["hitl_result"] = answered.result.value["result"]

        doomed = await client.run_workflow_nowait("Approve", start_event=Label(label="cancel"))
        out["cancel"] = (await client.cancel_handler(doomed.handler_id)).status
        cancelled = await client.get_handlers(status=["cancelled"], workflow_name=["Approve"])
        out["cancelled_listed"] = doomed.handler_id in {h.handler_id for h in cancelled.handlers}
        try:
            await client.get_handler(doomed.handler_id)
        except httpx.HTTPStatusError as exc:  # llama's server answers 500 for an ended failure
            out["cancelled_get_status"] = exc.response.status_code
    return out


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
