from app.client import Client
from tests.harness import Worker


def test_sequential_workflow_with_distributed_tools_completes(
    client: Client, workers: Worker
) -> None:
    handle = client.submit("AddTwice", a=2, b=3)
    assert handle.result(timeout=30) == 10
