"""Events sent into a run from outside (a person answering, another process).

A step waiting for the event (``wait_for_event``, in the run or a child) gets it as the answer
of its call; otherwise the event is routed to the steps that accept it, as if emitted.
"""

from __future__ import annotations

import uuid
from typing import Any

from tasks import runs
from tasks.protocol import LogKind, RunStatus, WaiterRecord, log_fields
from tasks.queries import require_run, store_errors
from tasks.runtime import Runtime
from workflows._engine import core
from workflows._engine.records import JournalEntry
from workflows.codec import dumps, encode_event
from workflows.errors import InvalidInputError
from workflows.events import Event
from workflows.workflow import require_workflow


def send_event(rt: Runtime, run_id: str, event: Event, step: str | None = None) -> None:
    """Answer a step of the run waiting for ``event``, else route it to the accepting steps
    (only ``step`` if named). Too large, a finished run, or no taker is InvalidInputError."""
    envelope = encode_event(event)
    payload = dumps(envelope, rt.settings.max_payload_bytes)
    with store_errors():
        if _answer_waiter(rt, run_id, event, envelope, payload):
            return
        _route(rt, run_id, event, payload, step)


def _answer_waiter(
    rt: Runtime, run_id: str, event: Event, envelope: dict[str, Any], payload: str
) -> bool:
    """Claim the first waiter the event matches (HDEL decides between racing senders)."""
    key = rt.keys.waiters(run_id)
    for field, raw in rt.redis.hgetall(key).items():
        waiter = WaiterRecord.from_json(raw)
        if waiter.matches(event) and rt.redis.hdel(key, field) == 1:
            address = waiter.address
            rt.redis.xadd(rt.keys.events(address.run), log_fields(LogKind.EVENT, payload))
            runs.answer_call(rt, address, JournalEntry.event(envelope))
            return True
    return False


def _route(rt: Runtime, run_id: str, event: Event, payload: str, step: str | None) -> None:
    record = require_run(rt, run_id)
    if record.status is not RunStatus.RUNNING:
        raise InvalidInputError(f"run {run_id} is {record.status.value}; it takes no events")
    spec = require_workflow(record.workflow).spec
    deliveries = core.route(spec, f"ext-{uuid.uuid4().hex}", [(event, step)], batch=False)
    if not deliveries:
        raise InvalidInputError(
            f"no step of {record.workflow} accepts {type(event).__name__} and none waits for it"
        )
    rt.redis.xadd(rt.keys.events(run_id), log_fields(LogKind.EVENT, payload))
    rt.send(runs.delivery_messages(rt, record.workflow, run_id, deliveries))
