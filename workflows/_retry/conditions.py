"""Retry conditions: predicates on the error that decide whether a failure may be retried.

Conditions compose with ``&`` (all must hold) and ``|`` (any may hold), in either order with a
plain function ``error -> bool``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class RetryCondition(Protocol):
    """Whether an error may be retried (any function of one error will do)."""

    def __call__(self, error: BaseException, /) -> bool: ...


class _Condition:
    """A condition that composes with ``&`` and ``|``."""

    def __call__(self, error: BaseException) -> bool:
        raise NotImplementedError

    def __and__(self, other: RetryCondition) -> retry_all:
        return retry_all(self, other)

    def __rand__(self, other: RetryCondition) -> retry_all:
        return retry_all(other, self)

    def __or__(self, other: RetryCondition) -> retry_any:
        return retry_any(self, other)

    def __ror__(self, other: RetryCondition) -> retry_any:
        return retry_any(other, self)


class retry_if_exception(_Condition):
    """Retry when ``predicate(error)`` is true."""

    def __init__(self, predicate: Callable[[BaseException], bool]) -> None:
        self.predicate = predicate

    def __call__(self, error: BaseException) -> bool:
        return bool(self.predicate(error))


class retry_if_exception_type(retry_if_exception):
    """Retry when the error is an instance of ``exception_types``."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: isinstance(error, exception_types))


class retry_if_not_exception_type(retry_if_exception):
    """Retry unless the error is an instance of ``exception_types``."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types
        super().__init__(lambda error: not isinstance(error, exception_types))


class retry_unless_exception_type(retry_if_not_exception_type):
    """The same as :class:`retry_if_not_exception_type` (tenacity's name)."""


class retry_if_exception_message(_Condition):
    """Retry when ``str(error)`` equals ``message``, or ``match`` (a regex) is found in it.

    Exactly one of the two is given; anything else is a TypeError.
    """

    def __init__(
        self, message: str | None = None, match: str | re.Pattern[str] | None = None
    ) -> None:
        if (message is None) == (match is None):
            raise TypeError("retry_if_exception_message() takes exactly one of 'message', 'match'")
        self.message = message
        self.match = match
        self._pattern = re.compile(match) if isinstance(match, str) else match

    def __call__(self, error: BaseException) -> bool:
        text = str(error)
        if self.message is not None:
            return text == self.message
        return self._pattern is not None and self._pattern.search(text) is not None


class retry_if_not_exception_message(retry_if_exception_message):
    """Retry unless ``str(error)`` equals ``message`` or matches ``match``."""

    def __call__(self, error: BaseException) -> bool:
        return not super().__call__(error)


class retry_if_exception_cause_type(_Condition):
    """Retry when an error in the explicit ``__cause__`` chain (``raise ... from cause``), not
    the error itself, is an instance of ``exception_types``. ``__context__`` is not followed."""

    def __init__(self, exception_types: ExceptionTypes = Exception) -> None:
        self.exception_types = exception_types

    def __call__(self, error: BaseException) -> bool:
        cause = error.__cause__
        while cause is not None:
            if isinstance(cause, self.exception_types):
                return True
            cause = cause.__cause__
        return False


class retry_any(_Condition):
    """Retry when any of ``conditions`` holds (what ``a | b`` builds)."""

    def __init__(self, *conditions: RetryCondition) -> None:
        self.retries = conditions

    def __call__(self, error: BaseException) -> bool:
        return any(condition(error) for condition in self.retries)


class retry_all(_Condition):
    """Retry when every one of ``conditions`` holds (what ``a & b`` builds)."""

    def __init__(self, *conditions: RetryCondition) -> None:
        self.retries = conditions

    def __call__(self, error: BaseException) -> bool:
        return all(condition(error) for condition in self.retries)


class retry_always(_Condition):
    """Retry every error."""

    def __call__(self, error: BaseException) -> bool:
        return True


class retry_never(_Condition):
    """Retry no error."""

    def __call__(self, error: BaseException) -> bool:
        return False
