"""A step's own exception reaches the caller as itself *and* as Baton's error (issue #9, gap 2).

On LlamaIndex Workflows ``await handler`` re-raises a step's exception unchanged; Baton raises a
StepFailedError that is also an instance of the step exception's class, with its ``args`` and
attributes. The client rebuilds the same from the error as data (``error_from_info``); these
tests rebuild it from ``err.to_info()`` exactly as the client does from the run hash.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
import sys
from collections.abc import Callable
from typing import Any

import pytest

from workflows import (
    BatonError,
    ChildWorkflowError,
    Context,
    ErrorInfo,
    Event,
    InvalidInputError,
    RunCancelledError,
    StartEvent,
    StepFailedError,
    StepFailedEvent,
    StopEvent,
    Workflow,
    WorkflowDefinitionError,
    WorkflowRuntimeError,
    catch_error,
    step,
)
from workflows.errors import (
    WorkflowCancelledByUser,
    WorkflowConfigurationError,
    WorkflowStepDoesNotExistError,
    WorkflowTimeoutError,
    error_from_info,
    original_of,
)

from .helpers import run_sync, scratch_registry


class NeedsArgs(Exception):
    """A user exception whose ``__init__`` requires arguments and keeps them as attributes."""

    def __init__(self, table: str, retries: int) -> None:
        super().__init__(f"{table} failed after {retries} tries")
        self.table = table
        self.retries = retries


class WithAttrs(ValueError):
    """A builtin subclass carrying JSON-able and non-JSON-able attributes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.code = 42
        self.detail = {"field": "email", "hints": ["lower-case"]}
        self.handle = object()  # cannot travel as JSON


class Picky(Exception):
    """Refuses to be subclassed: no combined class can be made."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("Picky takes no subclasses")


class Fatal(BaseException):
    """Not an Exception: never wrapped as one."""


def _local_error() -> type[Exception]:
    class LocalError(Exception):
        pass

    return LocalError


LocalError = _local_error()  # qualname `_local_error.<locals>.LocalError`: not resolvable

CASES: dict[str, Callable[[], BaseException]] = {
    "key": lambda: KeyError("k"),
    "value": lambda: ValueError("bad value", 2),
    "timeout": lambda: TimeoutError("took too long"),
    "oserror": lambda: OSError(2, "No such file or directory", "data.csv"),
    "required_args": lambda: NeedsArgs("users", 3),
    "custom_attrs": lambda: WithAttrs("invalid email"),
    "unicode": lambda: UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    "local": lambda: LocalError("from a function"),
    "picky": lambda: Picky("picky"),
    "fatal": lambda: Fatal("fatal"),
    "baton": lambda: InvalidInputError("bad input"),
}


def make(case: str) -> BaseException:
    return CASES[case]()


class OrigInput(StartEvent):
    case: str


class OrigRaiser(Workflow):
    @step
    async def explode(self, ev: OrigInput) -> StopEvent:
        raise make(ev.case)


def failure(case: str) -> BatonError:
    """The error ``await handler`` raises when the step raises case ``case``."""
    with pytest.raises(BatonError) as info:
        run_sync(OrigRaiser(), case=case)
    return info.value


def same_exception(err: BaseException, original: BaseException) -> None:
    assert isinstance(err, type(original))
    assert err.args == original.args
    assert str(err) == str(original)
    assert repr(err) == repr(original)


# --- in-process: await handler -------------------------------------------------------------


def test_except_key_error_catches_a_steps_key_error_as_in_llamaindex() -> None:
    async def scenario() -> KeyError:
        try:
            await OrigRaiser().run(case="key")
        except KeyError as exc:
            return exc
        raise AssertionError("KeyError not raised")

    err = asyncio.run(scenario())
    assert err.args == ("k",) and str(err) == "'k'"
    assert isinstance(err, StepFailedError) and isinstance(err, BatonError)
    assert (err.step, err.attempts, err.cause_type) == ("OrigRaiser.explode", 1, "KeyError")
    assert err.message == "step OrigRaiser.explode failed after 1 attempt(s): KeyError: 'k'"
    assert isinstance(err.__cause__, KeyError) and type(err.__cause__) is KeyError
    assert err.__notes__ == [err.message]  # tracebacks (and pytest's match=) name the step


@pytest.mark.parametrize("case", ["key", "value", "oserror", "unicode"])
def test_builtin_exceptions_come_back_as_their_class_with_their_args(case: str) -> None:
    err = failure(case)
    assert isinstance(err, StepFailedError)
    same_exception(err, make(case))


def rebuilt(exc: BaseException, *, in_process: bool) -> BatonError:
    """What the caller gets for a step failing with ``exc``, from the data alone or not."""
    data = original_of(exc)
    assert data is not None
    info = ErrorInfo(type="StepFailedError", message="m", details={"original": data.model_dump()})
    return error_from_info(info, exc if in_process else None)


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "from data"])
@pytest.mark.parametrize("case", ["timeout", "oserror", "value"])
def test_timeout_os_and_value_errors_combine_with_step_failed_error(
    case: str, in_process: bool
) -> None:
    # A step's TimeoutError is read as the step's own timeout by the executor today, so this
    # checks the combination itself rather than a run.
    err = rebuilt(make(case), in_process=in_process)
    assert isinstance(err, StepFailedError)
    same_exception(err, make(case))


def test_an_os_error_keeps_its_errno_and_filename() -> None:
    err = failure("oserror")
    assert isinstance(err, FileNotFoundError)
    assert (err.errno, err.filename) == (2, "data.csv")
    assert str(err) == "[Errno 2] No such file or directory: 'data.csv'"


def test_a_user_exception_whose_init_requires_arguments_is_rebuilt_without_calling_it() -> None:
    err = failure("required_args")
    same_exception(err, NeedsArgs("users", 3))
    assert isinstance(err, NeedsArgs) and (err.table, err.retries) == ("users", 3)


def test_an_exception_subclass_keeps_its_attributes_in_process() -> None:
    err = failure("custom_attrs")
    assert isinstance(err, WithAttrs) and isinstance(err, ValueError)
    assert (err.code, err.detail) == (42, {"field": "email", "hints": ["lower-case"]})
    assert isinstance(err.handle, object)


def test_baton_fields_win_over_original_attributes_of_the_same_name() -> None:
    err = failure("required_args")
    assert isinstance(err, StepFailedError)
    assert err.message.startswith("step OrigRaiser.explode failed")
    assert err.to_info().type == "StepFailedError"


@pytest.mark.parametrize(
    ("case", "cause_type"),
    [
        pytest.param("picky", "Picky", id="a class refusing subclasses"),
        pytest.param("fatal", "Fatal", id="a BaseException that is not an Exception"),
        pytest.param("baton", "InvalidInputError", id="a Baton error raised by the step"),
    ],
)
def test_a_plain_step_failed_error_when_no_combined_class_can_be_made(
    case: str, cause_type: str
) -> None:
    err = failure(case)
    assert type(err) is StepFailedError
    assert err.cause_type == cause_type
    assert type(err.__cause__) is type(make(case))


def test_a_baton_error_raised_by_a_step_still_travels_as_the_failures_cause() -> None:
    err = failure("baton")
    assert isinstance(err, StepFailedError) and not isinstance(err, InvalidInputError)
    assert err.cause is not None and err.cause.type == "InvalidInputError"
    assert err.original is None


# --- distributed: the client rebuilds it from data -----------------------------------------


@pytest.mark.parametrize("case", ["key", "value", "oserror", "required_args"])
def test_the_client_rebuilds_the_original_class_from_the_error_as_data(case: str) -> None:
    info = ErrorInfo.model_validate_json(failure(case).to_info().model_dump_json())
    err = error_from_info(info)
    assert isinstance(err, StepFailedError) and err.step == "OrigRaiser.explode"
    same_exception(err, make(case))
    assert err.__cause__ is None  # only data crossed: no original object to chain


def test_only_json_able_attributes_travel_and_odd_arguments_travel_as_their_repr() -> None:
    info = failure("custom_attrs").to_info()
    assert info.details["original"] == {
        "type": f"{__name__}:WithAttrs",
        "args": ["invalid email"],
        "attrs": {"code": 42, "detail": {"field": "email", "hints": ["lower-case"]}},
    }
    err = error_from_info(info)
    assert isinstance(err, WithAttrs) and err.code == 42 and not hasattr(err, "handle")
    odd = failure("unicode").to_info().details["original"]
    assert odd["args"] == ["utf-8", repr(b"\xff"), 0, 1, "invalid start byte"]


@pytest.mark.parametrize(
    "case",
    [
        pytest.param("unicode", id="arguments the class refuses once they travelled as repr"),
        pytest.param("local", id="a class defined in a function"),
        pytest.param("picky", id="a class refusing subclasses"),
    ],
)
def test_the_client_falls_back_to_a_plain_step_failed_error_keeping_the_data(case: str) -> None:
    err = error_from_info(failure(case).to_info())
    assert type(err) is StepFailedError
    assert err.original is not None and err.original.type.endswith(type(make(case)).__qualname__)
    assert err.message.startswith("step OrigRaiser.explode failed after 1 attempt(s): ")


def step_failure_naming(path: str, original: Any = None) -> ErrorInfo:
    data = {"type": path, "args": ["x"], "attrs": {}} if original is None else original
    return ErrorInfo(type="StepFailedError", message="m", details={"original": data})


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("builtins:int", id="not an exception class"),
        pytest.param("os:system", id="not a class"),
        pytest.param("builtins:KeyboardInterrupt", id="not an Exception"),
        pytest.param("__main__:OrigMainError", id="another process's main module"),
        pytest.param("baton_never_imported_xyz:Err", id="a module not imported here"),
        pytest.param("workflows.errors:InvalidInputError", id="a Baton error"),
        pytest.param(f"{__name__}:_local_error.<locals>.LocalError", id="a local class"),
    ],
)
def test_the_client_never_resolves_anything_but_an_imported_exception_class(path: str) -> None:
    err = error_from_info(step_failure_naming(path))
    assert type(err) is StepFailedError
    assert "baton_never_imported_xyz" not in sys.modules


def test_malformed_original_data_still_gives_the_step_failed_error() -> None:
    err = error_from_info(step_failure_naming("", original="not a record"))
    assert type(err) is StepFailedError and err.original is None


def test_a_huge_exception_travels_with_its_class_and_the_start_of_its_message() -> None:
    big = NeedsArgs("x" * 200_000, 3)
    err = rebuilt(big, in_process=False)
    assert isinstance(err, NeedsArgs) and err.args == (big.args[0][:1_000],)
    assert not hasattr(err, "table")  # the attributes were dropped first
    assert rebuilt(big, in_process=True).args == big.args


def test_a_combined_error_can_be_copied_and_pickled() -> None:
    err = failure("required_args")
    for clone in (copy.copy(err), pickle.loads(pickle.dumps(err))):
        assert type(clone) is type(err) and isinstance(clone, NeedsArgs)
        assert isinstance(clone, StepFailedError)
        assert (clone.args, clone.table, clone.message) == (err.args, "users", err.message)


def test_the_error_handler_receives_the_original_as_data() -> None:
    class OrigCaught(Workflow):
        @step
        async def explode(self, ev: StartEvent) -> StopEvent:
            raise KeyError("k")

        @catch_error
        async def recover(self, ev: StepFailedEvent) -> StopEvent:
            return StopEvent(result=ev.error.details["original"])

    with scratch_registry():
        assert run_sync(OrigCaught()) == {"type": "builtins:KeyError", "args": ["k"], "attrs": {}}


# --- nested runs ---------------------------------------------------------------------------


class OrigChild(Workflow):
    @step
    async def explode(self, ev: StartEvent) -> StopEvent:
        raise ValueError("child broke", 7)


class OrigAwaitsChild(Workflow):
    @step
    async def call(self, ev: StartEvent) -> StopEvent:
        try:
            await OrigChild().run()
        except ValueError as exc:
            return StopEvent(result=list(exc.args))
        return StopEvent(result="not caught")


class OrigRunsChild(Workflow):
    @step
    async def call(self, ctx: Context, ev: StartEvent) -> StopEvent:
        try:
            await ctx.run_workflow(OrigChild)
        except ValueError as exc:
            assert isinstance(exc, ChildWorkflowError) and exc.child_error is not None
            return StopEvent(result=[list(exc.args), exc.workflow, exc.child_error.type])
        return StopEvent(result="not caught")


class OrigLetsChildFail(Workflow):
    @step
    async def call(self, ev: StartEvent) -> StopEvent:
        return StopEvent(result=await OrigChild().run())


def test_a_step_awaiting_a_nested_run_catches_the_childs_exception() -> None:
    assert run_sync(OrigAwaitsChild()) == ["child broke", 7]


def test_run_workflow_raises_a_child_workflow_error_that_is_the_childs_exception_too() -> None:
    assert run_sync(OrigRunsChild()) == [["child broke", 7], "OrigChild", "StepFailedError"]


def test_an_uncaught_nested_failure_reaches_the_caller_as_the_childs_exception() -> None:
    with pytest.raises(ValueError, match="child broke") as info:
        run_sync(OrigLetsChildFail())
    err = info.value
    assert isinstance(err, StepFailedError) and err.cause_type == "StepFailedError"
    assert err.message.startswith("step OrigLetsChildFail.call failed after 1 attempt(s): ")


def test_a_child_workflow_error_from_data_is_the_childs_exception_when_its_class_is_known() -> None:
    known = error_from_info(failure("key").to_info()).to_info()
    unknown = error_from_info(failure("local").to_info()).to_info()
    err = ChildWorkflowError.of("OrigRaiser", known)
    assert isinstance(err, KeyError) and err.args == ("k",) and err.workflow == "OrigRaiser"
    assert err.message.startswith("child workflow OrigRaiser failed: StepFailedError: ")
    assert err.to_info().type == "ChildWorkflowError"
    assert type(ChildWorkflowError.of("OrigRaiser", unknown)) is ChildWorkflowError
    timed_out = WorkflowTimeoutError("slow").to_info()
    assert type(ChildWorkflowError.of("OrigRaiser", timed_out)) is ChildWorkflowError


# --- LlamaIndex's other error names --------------------------------------------------------


def test_llamaindex_error_names_map_onto_batons_tree() -> None:
    assert issubclass(WorkflowRuntimeError, BatonError)
    assert issubclass(WorkflowStepDoesNotExistError, WorkflowRuntimeError)
    assert WorkflowCancelledByUser is RunCancelledError
    assert WorkflowConfigurationError is WorkflowDefinitionError


def test_cancelling_a_run_raises_workflow_cancelled_by_user() -> None:
    class OrigSlow(Workflow):
        @step
        async def wait(self, ev: StartEvent) -> StopEvent:
            await asyncio.sleep(30)
            return StopEvent()

    async def scenario() -> None:
        handler = OrigSlow().run()
        await asyncio.sleep(0.01)
        await handler.cancel_run()
        with pytest.raises(WorkflowCancelledByUser):
            await handler

    with scratch_registry():
        asyncio.run(scenario())


class OrigNote(Event):
    n: int


class OrigTalker(Workflow):
    @step
    async def talk(self, ctx: Context, ev: StartEvent) -> StopEvent:
        for n in range(2):
            ctx.write_event_to_stream(OrigNote(n=n))
        return StopEvent(result="said 2")


def test_streaming_again_after_the_stop_event_raises_even_if_the_reader_stopped_there() -> None:
    async def scenario() -> list[str]:
        handler = OrigTalker().run()
        seen = []
        async for event in handler.stream_events():
            seen.append(type(event).__name__)
            if isinstance(event, StopEvent):
                break
        with pytest.raises(WorkflowRuntimeError):
            async for _ in handler.stream_events():
                pass
        await handler
        return seen

    assert asyncio.run(scenario()) == ["OrigNote", "OrigNote", "StopEvent"]


def test_a_stream_left_early_goes_on_where_it_stopped_and_an_unread_one_is_kept() -> None:
    async def scenario() -> tuple[list[Event], list[Event]]:
        handler = OrigTalker().run()
        first = []
        async for event in handler.stream_events():
            first.append(event)
            break
        first += [e async for e in handler.stream_events()]
        unread = OrigTalker().run()
        await unread
        return first, [e async for e in unread.stream_events()]

    first, late = asyncio.run(scenario())
    assert first == late == [OrigNote(n=0), OrigNote(n=1), StopEvent(result="said 2")]


@pytest.mark.parametrize(
    ("step_name", "event", "error", "why"),
    [
        pytest.param(
            "nope",
            OrigNote(n=1),
            WorkflowStepDoesNotExistError,
            "Step nope does not exist",
            id="no such step",
        ),
        pytest.param(
            "hear",
            StartEvent(),
            WorkflowRuntimeError,
            "Step hear does not accept event of type StartEvent",
            id="a step not taking it",
        ),
    ],
)
def test_sending_an_event_to_a_step_that_cannot_take_it_raises_workflow_runtime_error(
    step_name: str, event: Event, error: type[WorkflowRuntimeError], why: str
) -> None:
    class OrigWaits(Workflow):
        @step
        async def wait(self, ev: StartEvent) -> StopEvent | OrigNote:
            await asyncio.sleep(30)
            return StopEvent()

        @step
        async def hear(self, ev: OrigNote) -> None:
            return None

    async def scenario() -> None:
        handler = OrigWaits().run()
        with pytest.raises(error, match=why):
            await handler.send_event(event, step=step_name)
        with pytest.raises(error, match=why):
            handler.ctx.send_event(event, step=step_name)
        await handler.send_event(OrigNote(n=2), step="hear")  # a step that takes it
        await handler.cancel_run()
        with pytest.raises(RunCancelledError):
            await handler

    with scratch_registry():
        asyncio.run(scenario())


def test_a_steps_own_timeout_error_is_not_taken_for_its_step_timeout() -> None:
    class OwnTimeout(Workflow):
        @step(timeout=30)
        async def bounded(self, ev: StartEvent) -> StopEvent:
            await asyncio.wait_for(asyncio.sleep(1), 0.001)
            return StopEvent()

    class NoTimeout(Workflow):
        @step
        async def free(self, ev: StartEvent) -> StopEvent:
            raise TimeoutError("upstream took too long")

    for flow in (OwnTimeout(), NoTimeout()):
        with pytest.raises(TimeoutError) as caught:
            asyncio.run(_await(flow))
        assert isinstance(caught.value, StepFailedError)
        assert caught.value.cause_type == "TimeoutError"


async def _await(flow: Workflow) -> Any:
    return await flow.run()
