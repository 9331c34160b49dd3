"""Abstract and extensible workflows: a base class a subclass completes, free-function steps
attached with ``@step(workflow=...)``, and a graph checked on first use, not at definition."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.celery_app import create_app
from config import Settings
from workflows import (
    Context,
    Event,
    InputRequiredEvent,
    StartEvent,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    WorkflowValidationError,
    step,
)
from workflows.workflow import check_workflows, get_workflow, runnable_workflows

from .helpers import run_sync, scratch_registry


class Drafted(Event):
    text: str


class Reviewed(Event):
    text: str


class Published(Event):
    text: str


# --- a base class that subclasses complete ------------------------------------------------


class DraftBase(Workflow):
    """Drafts, then leaves what happens to the draft to subclasses: incomplete on its own."""

    @step
    async def draft(self, ev: StartEvent) -> Drafted:
        return Drafted(text=f"draft of {ev.get('topic')}")


class ReviewedDraft(DraftBase):
    @step
    async def review(self, ev: Drafted) -> StopEvent:
        return StopEvent(result=f"reviewed {ev.text}")


class ShoutedDraft(DraftBase):
    @step
    async def shout(self, ev: Drafted) -> StopEvent:
        return StopEvent(result=ev.text.upper())


def test_an_incomplete_base_class_is_defined_and_subclassed_without_error() -> None:
    assert run_sync(ReviewedDraft(), topic="owls") == "reviewed draft of owls"
    assert run_sync(ShoutedDraft(), topic="owls") == "DRAFT OF OWLS"


def test_an_incomplete_base_class_fails_when_validated_or_run_naming_every_problem() -> None:
    with pytest.raises(WorkflowValidationError) as info:
        DraftBase.validate()
    assert info.value.problems == [
        "DraftBase.draft: emits Drafted, which no step accepts",
        "DraftBase: no path from StartEvent to a StopEvent",
    ]
    with pytest.raises(WorkflowValidationError):
        run_sync(DraftBase(), topic="owls")


class EmptyBase(Workflow):
    """No steps at all: a mixin of settings for the classes below."""

    queue = "drafts"


class FromEmptyBase(EmptyBase):
    @step
    async def only(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=self.queue)


def test_a_base_class_without_steps_is_definable_and_subclassable() -> None:
    assert run_sync(FromEmptyBase()) == "drafts"
    with pytest.raises(WorkflowValidationError, match="EmptyBase: has no steps"):
        EmptyBase.validate()


class OverridingDraft(ReviewedDraft):
    @step
    async def review(self, ev: Drafted) -> StopEvent:
        return StopEvent(result=f"edited {ev.text}")


def test_a_subclass_overrides_a_step_of_its_base() -> None:
    assert set(OverridingDraft.spec.steps) == {"draft", "review"}
    assert run_sync(OverridingDraft(), topic="owls") == "edited draft of owls"
    assert run_sync(ReviewedDraft(), topic="owls") == "reviewed draft of owls"


class AbstractDraft(DraftBase, abstract=True):
    pass


def test_an_abstract_class_is_not_registered_by_name_but_its_subclasses_are() -> None:
    assert get_workflow("AbstractDraft") is None
    assert get_workflow("ReviewedDraft") is ReviewedDraft
    with pytest.raises(WorkflowValidationError):
        AbstractDraft.validate()


def test_a_step_signature_problem_in_a_base_class_still_fails_at_definition() -> None:
    with pytest.raises(WorkflowValidationError) as info:

        class BadBase(Workflow, abstract=True):
            @step
            async def draft(self) -> Drafted:
                return Drafted(text="")

    assert info.value.problems == ["BadBase.draft: no parameter is annotated with an Event type"]


# --- free-function steps ------------------------------------------------------------------


class Newsroom(Workflow):
    """Only a start step here; the rest is attached below, as a LlamaIndex user would."""

    @step
    async def draft(self, ev: StartEvent) -> Drafted:
        return Drafted(text=str(ev.get("topic")))


@step(workflow=Newsroom)
async def edit(ev: Drafted, ctx: Context) -> Published:
    return Published(text=f"{ev.text} (run {bool(ctx.run_id)})")


@step(workflow=Newsroom, retry_policy=None)
async def release(ev: Published) -> StopEvent:
    return StopEvent(result=f"released {ev.text}")


def test_free_function_steps_attached_to_a_workflow_run_without_an_instance() -> None:
    assert set(Newsroom.spec.steps) == {"draft", "edit", "release"}
    assert Newsroom.spec.steps["edit"].free and not Newsroom.spec.steps["draft"].free
    assert run_sync(Newsroom(), topic="owls") == "released owls (run True)"


def test_free_function_steps_are_not_inherited_by_subclasses() -> None:
    with scratch_registry():

        class Bureau(Newsroom):
            """As in LlamaIndex, it has Newsroom's methods but not the steps attached to it."""

        with pytest.raises(WorkflowValidationError) as info:
            Bureau.validate()

    assert info.value.problems == [
        "Bureau.draft: emits Drafted, which no step accepts",
        "Bureau: no path from StartEvent to a StopEvent",
    ]


def test_attaching_a_step_rebuilds_the_graph_on_next_use() -> None:
    with scratch_registry():

        class Desk(Workflow):
            @step
            async def draft(self, ev: StartEvent) -> Drafted:
                return Drafted(text="x")

        with pytest.raises(WorkflowValidationError):
            Desk.validate()

        @step(workflow=Desk)
        async def finish(ev: Drafted) -> StopEvent:
            return StopEvent(result=ev.text)

        assert Desk.validate() is False
        assert run_sync(Desk()) == "x"


def test_a_free_function_step_needs_a_workflow() -> None:
    with pytest.raises(WorkflowDefinitionError, match="needs @step\\(workflow=SomeWorkflow\\)"):

        @step
        async def stray(ev: StartEvent) -> StopEvent:
            return StopEvent()


async def shared_release(self: Workflow, ev: Drafted) -> StopEvent:
    """A module-level function meant for class bodies: it takes self."""
    return StopEvent(result=f"{type(self).__name__} released {ev.text}")


@step
async def shared_draft(self: Workflow, ev: StartEvent) -> Drafted:
    return Drafted(text=str(ev.get("topic")))


def test_a_function_assigned_into_a_class_body_is_a_method_step_of_each_class() -> None:
    with scratch_registry():

        class Press(Workflow):
            draft = shared_draft  # decorated where it was defined
            release = step(shared_release)  # decorated in the class body

        class Gazette(Workflow):
            draft = shared_draft
            release = step(shared_release)

    assert not any(s.free for s in Press.spec.steps.values())
    assert set(Press.spec.steps) == set(Gazette.spec.steps) == {"draft", "release"}
    assert run_sync(Press(), topic="owls") == "Press released owls"
    assert run_sync(Gazette(), topic="bats") == "Gazette released bats"


def test_a_free_function_step_may_not_take_self() -> None:
    with pytest.raises(WorkflowValidationError) as info:

        @step(workflow=Newsroom)
        async def proofread(self: Workflow, ev: Published) -> StopEvent:
            return StopEvent()

    assert info.value.problems == [
        "Newsroom.proofread: a free function step is called without an instance, so it cannot "
        "take self (define it in the class body, or assign it there, instead)"
    ]
    assert "proofread" not in Newsroom.spec.steps


def test_an_attached_step_may_not_reuse_a_step_name() -> None:
    with pytest.raises(WorkflowDefinitionError, match="Newsroom already has a step named 'draft'"):

        @step(workflow=Newsroom)
        async def draft(ev: StartEvent) -> StopEvent:
            return StopEvent()


def test_an_attached_step_with_a_bad_signature_fails_when_attached() -> None:
    with pytest.raises(WorkflowValidationError) as info:

        @step(workflow=Newsroom)
        async def sloppy(ev) -> StopEvent:  # type: ignore[no-untyped-def]
            return StopEvent()

    assert info.value.problems == ["Newsroom.sloppy: no parameter is annotated with an Event type"]
    assert "sloppy" not in Newsroom.spec.steps


# --- validate() and graph checks ----------------------------------------------------------


class AsksAHuman(Workflow):
    @step
    async def ask(self, ev: StartEvent) -> InputRequiredEvent | StopEvent:
        return StopEvent()


def test_validate_returns_whether_the_workflow_uses_human_in_the_loop_events() -> None:
    assert AsksAHuman.validate() is True
    assert AsksAHuman().validate() is True
    assert ReviewedDraft().validate() is False


def test_a_dead_end_step_is_a_graph_problem_unless_it_skips_the_check() -> None:
    with scratch_registry():

        class SideBranch(Workflow):
            @step
            async def start(self, ev: StartEvent) -> Drafted | StopEvent:
                return StopEvent()

            @step
            async def note(self, ev: Drafted) -> Reviewed:
                return Reviewed(text=ev.text)

            @step
            async def log(self, ev: Reviewed) -> None:
                return None

        class SkippedSideBranch(SideBranch):
            @step(skip_graph_checks=["dead_end"])
            async def note(self, ev: Drafted) -> Reviewed:
                return Reviewed(text=ev.text)

        with pytest.raises(WorkflowValidationError) as info:
            SideBranch.validate()
        assert SkippedSideBranch.validate() is False

    assert info.value.problems == [
        "SideBranch.note: dead end, no path to a StopEvent or InputRequiredEvent"
    ]


def test_an_unreachable_step_may_skip_the_reachability_check() -> None:
    with scratch_registry():

        class Listener(Workflow):
            @step
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()

            @step(skip_graph_checks=["reachability"])
            async def on_publish(self, ev: Published) -> StopEvent:  # sent from outside
                return StopEvent(result=ev.text)

        assert Listener.validate() is False


def test_an_unknown_graph_check_is_refused_at_definition() -> None:
    with pytest.raises(WorkflowDefinitionError, match="unknown check\\(s\\) 'terminal_event'"):

        class Unknown(Workflow):
            @step(skip_graph_checks=["terminal_event"])  # type: ignore[list-item]
            async def start(self, ev: StartEvent) -> StopEvent:
                return StopEvent()


# --- checking every registered workflow (worker start, `baton check`) ----------------------


def test_check_skips_an_incomplete_base_that_registered_workflows_complete() -> None:
    checks = {c.workflow: c for c in check_workflows()}
    assert checks["DraftBase"].base_of == ["OverridingDraft", "ReviewedDraft", "ShoutedDraft"]
    assert not checks["DraftBase"].failed
    assert not checks["ReviewedDraft"].problems
    assert "DraftBase" not in runnable_workflows()
    assert runnable_workflows()["ReviewedDraft"] is ReviewedDraft


def test_a_worker_does_not_start_with_an_invalid_workflow_every_problem_named() -> None:
    with scratch_registry():

        class Unfinished(Workflow):
            @step
            async def draft(self, ev: StartEvent) -> Drafted:
                return Drafted(text="x")

        with pytest.raises(WorkflowValidationError) as info:
            create_app(Settings(imports=[]))

    assert str(info.value) == (
        "workflow Unfinished is invalid:\n"
        "  - Unfinished.draft: emits Drafted, which no step accepts\n"
        "  - Unfinished: no path from StartEvent to a StopEvent"
    )


CHECKED_MODULE = """
from workflows import Event, StartEvent, StopEvent, Workflow, step

class Mid(Event):
    pass

class Base(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Mid:
        return Mid()

class Done(Base):
    @step
    async def finish(self, ev: Mid) -> StopEvent:
        return StopEvent(result="done")
"""

BROKEN = """
class Broken(Workflow):
    @step
    async def start(self, ev: StartEvent) -> Mid:
        return Mid()

    @step
    async def island(self, ev: StopEvent) -> None:
        return None
"""


def _baton_check(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "checked_flows.py").write_text(textwrap.dedent(source))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BATON_IMPORTS": '["checked_flows"]'}
    env.pop("BATON_REDIS_URL", None)  # checking needs no Redis
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "check"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_baton_check_passes_a_module_whose_base_class_a_subclass_completes(
    tmp_path: Path,
) -> None:
    done = _baton_check(tmp_path, CHECKED_MODULE)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "skipped  Base: incomplete, a base of Done (declare it with abstract=True to leave it out)",
        "ok       Done",
        "2 workflow(s) checked, 0 invalid",
    ]


def test_baton_check_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    done = _baton_check(tmp_path, CHECKED_MODULE + BROKEN)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[1:5] == [
        "invalid  Broken",
        "  - Broken.start: emits Mid, which no step accepts",
        "  - Broken.island: unreachable from StartEvent",
        "  - Broken: no path from StartEvent to a StopEvent",
    ]
    assert done.stdout.splitlines()[-1] == "3 workflow(s) checked, 1 invalid"
