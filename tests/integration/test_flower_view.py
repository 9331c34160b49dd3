"""What Flower shows comes from the workers: readable task names, each on its own queue."""

from __future__ import annotations

from app.client import Client
from tests.harness import Worker, eventually


def test_workers_register_readable_step_and_tool_task_names_on_their_queues(
    client: Client, workers: Worker
) -> None:
    inspect = client.runtime.app.control.inspect(destination=[workers.name], timeout=2.0)
    registered = eventually(lambda: inspect.registered(), what="inspect reply")[workers.name]
    for name in (
        "Research.plan",
        "Research.score",
        "Research.combine",
        "tool.sentiment",
        "Pipeline.normalize",
        "tool.add",
    ):
        assert name in registered
    queues = {q["name"] for q in eventually(lambda: inspect.active_queues())[workers.name]}
    assert {"baton", "tools", "analysis", "itest"} <= queues
    routes = client.runtime.app.conf.task_routes
    assert routes["Research.score"] == {"queue": "analysis"}
    assert routes["tool.sentiment"] == {"queue": "analysis"}
    assert routes["Research.plan"] == {"queue": "baton"}
    assert routes["tool.add"] == {"queue": "tools"}
