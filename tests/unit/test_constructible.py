"""A worker builds a workflow with no arguments: which classes it can build is known up front."""

from __future__ import annotations

import pytest

from workflows import ConfigurationError, StartEvent, StopEvent, Workflow, step
from workflows.workflow import require_constructible


class Plain(Workflow):
    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        return StopEvent()


class Defaults(Plain):
    def __init__(self, model: str = "small", *args: object, **kwargs: object) -> None:
        super().__init__()
        self.model = model


class Needs(Plain):
    def __init__(self, client: object, /, llm: str, *, key: str, retries: int = 3) -> None:
        super().__init__()


def test_a_workflow_whose_init_takes_no_required_arguments_is_constructible() -> None:
    require_constructible(Plain)
    require_constructible(Defaults)


def test_a_workflow_whose_init_requires_arguments_is_refused_naming_them() -> None:
    with pytest.raises(ConfigurationError) as info:
        require_constructible(Needs)
    assert str(info.value) == (
        "workflow Needs cannot run distributed: a worker builds it with no arguments, "
        "but its __init__ requires: client, llm, key"
    )
