"""How a delivery ended, told to Celery once Baton has committed it, so Flower shows the truth.

Baton keeps its own semantics: an attempt's failure is data (a retry it sends itself, a
``ToolError`` for the calling step, a failed run), and the message is acknowledged once. Celery
only sees what the task function does at the very end: returning is SUCCESS; raising
:class:`AttemptFailed` is FAILURE (acknowledged: ``task_acks_on_failure_or_timeout``);
raising ``celery.exceptions.Retry`` is RETRY (acknowledged; Celery sends nothing itself, Baton
already did). Both carry the attempt's traceback, which Flower shows on the task's page.

Tasks declare ``throws=(AttemptFailed,)``: Celery then logs the failure in one line at INFO, and
the one full record of the attempt (with its traceback) stays Baton's own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery.exceptions import Reject, Retry

from tasks.protocol import Span, SpanOutcome


class AttemptFailed(Exception):
    """What Celery sees of an attempt that raised (its message names the run, the step or tool
    and the attempt; its cause carries the attempt's traceback)."""


class RemoteTraceback(Exception):
    """A traceback kept as text (it may come from a thread, an event loop or another process),
    chained as the cause so Celery's formatted traceback shows it (as ``concurrent.futures``
    does for a process pool's errors)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'


# How every Baton task is declared to Celery (the step and tool tasks, the interop tasks).
TASK_OPTIONS: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "ignore_result": True,
    "typing": False,
    "bind": True,
    # an attempt that raised is told to Celery as AttemptFailed (``tell_celery``): expected,
    # so Celery logs one line; Baton's own record of the attempt carries the traceback
    "throws": (AttemptFailed,),
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One committed delivery: its span, and for a failed attempt its traceback text."""

    span: Span
    traceback: str = ""


def tell_celery(attempt: Attempt | None) -> None:
    """Return (SUCCESS) or raise what makes Celery record the attempt as it ended."""
    if attempt is None or attempt.span.outcome not in (
        SpanOutcome.FAILED,
        SpanOutcome.RETRY,
        SpanOutcome.LIMITED,
    ):
        return
    span = attempt.span
    if span.outcome is SpanOutcome.LIMITED:  # not run: re-sent to wait for its rate limit
        raise Retry(f"{span.error} (run {span.run}, attempt {span.attempt}); Baton re-sent it")
    what = f"tool {span.name}" if span.call else f"step {span.name}"
    summary = f"{span.error or 'failed'} (run {span.run}, {what}, attempt {span.attempt})"
    cause = RemoteTraceback(attempt.traceback) if attempt.traceback else None
    if span.outcome is SpanOutcome.RETRY:
        raise Retry(
            f"{summary}; Baton sent attempt {span.attempt + 1}", AttemptFailed(summary)
        ) from cause
    raise AttemptFailed(summary) from cause


def internal_failure(what: str, task_id: str, exc: BaseException) -> AttemptFailed:
    """Baton's own code failed on this message (the run already failed as data)."""
    return AttemptFailed(f"{what}[{task_id}]: Baton could not run it: {type(exc).__name__}: {exc}")


STORE_AWAY_PAUSE = 1.0  # seconds a delivery waits before it goes back to a separate broker


def store_away(exc: BaseException, separate_broker: bool) -> BaseException:
    """What a task raises when the state Redis failed under it, before it wrote anything.

    With Redis as the broker, the error itself: the ack cannot reach Redis either, so kombu
    restores the message (and the reaper knows it is in flight). With a separate broker the
    ack would succeed and the message would be gone while its in-flight record says it waits
    in the broker: it is rejected back onto its queue instead, after a pause (no hot loop
    while Redis is away)."""
    if not separate_broker:
        return exc
    time.sleep(STORE_AWAY_PAUSE)
    return Reject(f"the state store is away: {exc}", requeue=True)
