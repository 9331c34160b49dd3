"""Records of Celery interop: a task-backed tool call's ticket and a canvas run's link.

A :class:`CallTicket` rides in the callbacks of a plain Celery task's message (its ``link`` and
``link_error``) and in the timeout timer of the call: it says where the answer goes and which
attempt it answers. A :class:`CanvasLink` is stored with a run started from a Celery canvas
(the run hash's ``canvas`` field): the ``baton.run`` task's request, whose chain or chord Baton
continues when the run ends. Both are JSON only; neither carries an import path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.protocol._json import compact, load
from tasks.protocol.state import CallAddress
from workflows.errors import PayloadError

# What a canvas continuation keeps of the ``baton.run`` task's Celery request: what the result
# backend needs to store its result, count it in a chord and propagate a failure down a chain.
REQUEST_FIELDS = (
    "id",
    "task",
    "root_id",
    "parent_id",
    "group",
    "group_index",
    "chord",
    "chain",
    "callbacks",
    "errbacks",
    "reply_to",
    "correlation_id",
)


@dataclass(frozen=True, slots=True)
class CallTicket:
    """One attempt of a task-backed tool call: the address of its answer, the tool, the
    attempt, the Celery task id of that attempt's message and when it was sent (wall clock).

    Wire: ``{"run", "inv", "call", "tool", "attempt", "task", "sent"}``."""

    run: str
    inv: str
    call: str
    tool: str
    attempt: int
    task_id: str
    sent: float

    @property
    def address(self) -> CallAddress:
        return CallAddress(self.run, self.inv, self.call)

    def dump(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "inv": self.inv,
            "call": self.call,
            "tool": self.tool,
            "attempt": self.attempt,
            "task": self.task_id,
            "sent": round(self.sent, 6),
        }

    @classmethod
    def parse(cls, data: Any) -> CallTicket:
        try:
            return cls(
                str(data["run"]),
                str(data["inv"]),
                str(data["call"]),
                str(data["tool"]),
                int(data["attempt"]),
                str(data["task"]),
                float(data["sent"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"not a call ticket: {str(data)[:200]}") from exc


@dataclass(frozen=True, slots=True)
class CanvasLink:
    """A run started by a ``baton.run`` task of a Celery canvas: which registered Celery app's
    result backend and broker continue it (``app``: its ``main`` name, empty for the only one
    registered) and that task's request (:data:`REQUEST_FIELDS`).

    Wire (the run hash's ``canvas`` field): ``{"app", "request"}``."""

    app: str
    request: dict[str, Any]

    @property
    def task_id(self) -> str:
        return str(self.request["id"])

    def to_json(self) -> str:
        return compact({"app": self.app, "request": self.request})

    @classmethod
    def from_json(cls, text: str) -> CanvasLink:
        data = load(text, "canvas link")
        try:
            request = dict(data["request"])
            if not request.get("id"):
                raise ValueError("no task id")
            return cls(str(data["app"]), request)
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError(f"not a canvas link: {text[:200]}") from exc

    @classmethod
    def of_request(cls, app: str, request: Any) -> CanvasLink:
        """From a Celery request (``task.request``): its JSON fields only."""
        fields = {name: getattr(request, name, None) for name in REQUEST_FIELDS}
        return cls(app, {k: v for k, v in fields.items() if v is not None})
