"""Events: typed pydantic messages that steps take and emit.

Every event class is registered under a type tag when it is defined; payloads name their
event by that tag and are decoded only against this registry — never by importing a path
taken from a message.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from workflows.errors import ErrorInfo, UnknownEventTypeError, WorkflowDefinitionError

_REGISTRY: dict[str, type[Event]] = {}


class Event(BaseModel):
    """Base of all events. Subclass it with typed fields."""

    model_config = ConfigDict(extra="allow", arbitrary_types_allowed=False)

    type_tag: ClassVar[str] = "baton.Event"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        tag = cls.__dict__.get("type_tag") or _default_tag(cls)
        cls.type_tag = tag
        existing = _REGISTRY.get(tag)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise WorkflowDefinitionError(f"event type tag {tag!r} is used by two classes")
        _REGISTRY[tag] = cls

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-like access (LlamaIndex compatibility)."""
        return getattr(self, key, default)


class StartEvent(Event):
    """Starts a run. Subclass it for typed run inputs; the plain one takes any keyword fields."""

    type_tag: ClassVar[str] = "baton.StartEvent"


class StopEvent(Event):
    """Ends a run; ``result`` is the run's result."""

    type_tag: ClassVar[str] = "baton.StopEvent"
    result: Any = None


class InputRequiredEvent(Event):
    """Written to the stream when a run pauses for a human (or any external) answer."""

    type_tag: ClassVar[str] = "baton.InputRequiredEvent"


class HumanResponseEvent(Event):
    """An answer sent into a waiting run from outside."""

    type_tag: ClassVar[str] = "baton.HumanResponseEvent"


class StepFailedEvent(Event):
    """Given to an error-handler step (``@catch_error``) when a step's retries are spent."""

    type_tag: ClassVar[str] = "baton.StepFailedEvent"
    step_name: str
    error: ErrorInfo
    attempts: int = 1
    input_event: dict[str, Any] = Field(default_factory=dict)


for _cls in (Event, StartEvent, StopEvent, InputRequiredEvent, HumanResponseEvent, StepFailedEvent):
    _REGISTRY[_cls.type_tag] = _cls


def _default_tag(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def event_class(tag: str) -> type[Event]:
    """The event class registered under ``tag``; an unknown tag is a clear error."""
    try:
        return _REGISTRY[tag]
    except KeyError:
        raise UnknownEventTypeError(f"unknown event type {tag!r}", tag=tag) from None


def is_external(cls: type[Event]) -> bool:
    """Events that arrive from outside the step graph (human answers, step failures)."""
    return issubclass(cls, HumanResponseEvent | StepFailedEvent)
