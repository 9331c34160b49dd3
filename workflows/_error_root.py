"""The root of Baton's error tree and the data every error travels as.

:class:`BatonError` and :class:`ErrorInfo` (an error as data) are what each branch of the tree
builds on; so are the helpers that turn any exception into data and make a Baton error an
instance of the step exception it stands for (the combined classes of ``_original``). They sit
below :mod:`workflows.errors`, which draws the tree and is where every name is imported from.
"""

from __future__ import annotations

import traceback
from typing import Any, Self, TypeVar

from pydantic import BaseModel, Field

from workflows._original import (
    OriginalException,
    attributes,
    baton_class,
    combined_class,
    describe,
    instantiate,
    original_class,
    resolve,
)

MAX_TRACEBACK_CHARS = 8_192  # a recursion error's traceback alone can run to megabytes


class ErrorInfo(BaseModel):
    """An error as data: what crosses the wire and what the run hash stores."""

    type: str
    message: str
    attempts: int = 1
    retryable: bool = True
    details: dict[str, Any] = Field(default_factory=dict)


class BatonError(Exception):
    """Root of every Baton error. Subclasses add typed, keyword-only fields (``_fields``) that
    travel in ``ErrorInfo.details`` and are restored by :func:`error_from_info`."""

    retryable: bool = True
    _fields: tuple[str, ...] = ()

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def details(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._fields}

    def to_info(self, attempts: int = 1) -> ErrorInfo:
        return ErrorInfo(
            type=baton_class(type(self)).__name__,  # a combined class travels as its Baton class
            message=self.message,
            attempts=attempts,
            retryable=self.retryable,
            details=_jsonable(self.details),
        )

    @classmethod
    def _from_info(cls, info: ErrorInfo) -> Self:
        known = {k: v for k, v in info.details.items() if k in cls._fields}
        return cls(info.message, **known)

    def _original_data(self) -> OriginalException | None:
        """The step exception this error stands for, as data; None for most errors."""
        return None

    def _note(self) -> str:
        """The note a rebuilt original exception carries, so its traceback says where it was
        raised."""
        return self.message


_E = TypeVar("_E", bound=BatonError)


def type_name(exc: BaseException) -> str:
    """The name an error goes by in Baton's messages and data: a Baton error that is also an
    instance of a step's exception class goes by its Baton class (``StepFailedError``)."""
    return baton_class(type(exc)).__name__


def original_of(exc: BaseException) -> OriginalException | None:
    """A step's exception as data to rebuild it from: for an Exception that is not a Baton
    error, or a Baton error standing for one; else None."""
    cls = original_class(exc)
    if not issubclass(cls, Exception) or issubclass(cls, BatonError):
        return None
    return describe(exc)


def with_original(err: _E, source: BaseException | None) -> _E:
    """``err`` as an instance of its original exception's class too, when that class is known:
    ``source``'s (the exception itself) or, else, the class its data names if imported here.
    Baton's fields and ``message`` win over original attributes of the same name."""
    data = err._original_data()
    if data is None:
        return err
    cls = original_class(source) if source is not None else resolve(data.type)
    combined = (
        None if cls is None or issubclass(cls, BatonError) else combined_class(type(err), cls)
    )
    if combined is None:
        return err
    if source is not None:
        exc = instantiate(combined, source.args, attributes(source))
    else:
        exc = instantiate(combined, tuple(data.args), data.attrs)
    if not isinstance(exc, type(err)):
        return err
    vars(exc).update(vars(err))
    exc.__notes__ = [*getattr(exc, "__notes__", []), err._note()]  # tracebacks say where
    return exc


def error_info(exc: BaseException, attempts: int = 1) -> ErrorInfo:
    """Any exception as data: a Baton error's own info, else its type and message."""
    if isinstance(exc, BatonError):
        return exc.to_info(attempts)
    return ErrorInfo(type=type(exc).__name__, message=str(exc), attempts=attempts)


def traceback_text(exc: BaseException, limit: int = MAX_TRACEBACK_CHARS) -> str:
    """``exc``'s formatted traceback (its causes included), at most ``limit`` characters. A
    longer one keeps its tail from a frame's first line on (the innermost frames and the
    exception itself are there), after a line saying how much was cut."""
    text = "".join(traceback.format_exception(exc))
    if len(text) <= limit:
        return text
    kept = text[len(text) - limit + 80 :]  # room for the marker line
    start = kept.find("\n  File ")  # start at a whole frame, else at a whole line
    kept = kept[(start if start >= 0 else kept.find("\n")) + 1 :] or kept
    return f"... traceback cut: {len(text) - len(kept)} of {len(text)} characters ...\n{kept}"


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if isinstance(value, BaseModel):
            out[key] = value.model_dump(mode="json")
        elif isinstance(value, str | int | float | bool | list | dict) or value is None:
            out[key] = value
        else:
            out[key] = repr(value)
    return out
