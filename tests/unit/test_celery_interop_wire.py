"""Celery interop's wire forms and pure decisions: call tickets, canvas links, a plain task's
framed message, a plain failure read back as a ToolError, and bad input to the public API."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery
from pydantic import create_model

from app.interop import baton_run, tool_from_task
from tasks.interop_canvas import start_event
from tasks.interop_tools import failure_of
from tasks.interop_wire import TaskMessage, frame_task, signature_dict
from tasks.protocol.interop import CallTicket, CanvasLink
from tasks.publish import Publisher
from workflows.errors import InvalidInputError, PayloadError
from workflows.retry import NO_RETRY
from workflows.tools import RemoteTask, ToolSpec

unit_app = Celery("unit-interop")


@unit_app.task(name="unit.varargs")
def varargs(*items: str) -> int:
    return len(items)


@unit_app.task(name="unit.plain")
def plain(x: int) -> int:
    return x


def test_call_ticket_wire_form_is_pinned() -> None:
    ticket = CallTicket("r1", "i1", "i1.0", "charge", 2, "t-1", 1.5)
    assert json.dumps(ticket.dump(), separators=(",", ":")) == (
        '{"run":"r1","inv":"i1","call":"i1.0","tool":"charge","attempt":2,"task":"t-1","sent":1.5}'
    )
    assert CallTicket.parse(ticket.dump()) == ticket
    with pytest.raises(PayloadError, match="not a call ticket"):
        CallTicket.parse({"run": "r1"})


def test_canvas_link_keeps_the_json_fields_of_the_request() -> None:
    request = SimpleNamespace(id="t1", task="baton.run", chain=[{"task": "x"}], group=None)
    link = CanvasLink.of_request("shop", request)
    assert link.to_json() == (
        '{"app":"shop","request":{"id":"t1","task":"baton.run","chain":[{"task":"x"}]}}'
    )
    assert CanvasLink.from_json(link.to_json()) == link
    with pytest.raises(PayloadError, match="not a canvas link"):
        CanvasLink.from_json('{"app": "shop", "request": {}}')


def test_a_plain_task_message_carries_kwargs_headers_callbacks_and_expiry() -> None:
    publisher = Publisher(Celery("framing"), "p:q:")
    answer = signature_dict("baton.answer", [{"run": "r1"}], "baton")
    m = TaskMessage(
        "shop.charge",
        "shop",
        kwargs={"amount": 2.0},
        task_id="t-1",
        headers={"baton_call_id": "i1.0"},
        link=[answer],
        expires=30.0,
    )
    key, raw = frame_task(publisher, m)
    envelope = json.loads(raw)
    args, kwargs, embed = json.loads(base64.b64decode(envelope["body"]))
    assert key == "p:q:shop"
    assert (args, kwargs) == ([], {"amount": 2.0})
    assert embed["callbacks"] == [answer] and embed["errbacks"] is None
    headers = envelope["headers"]
    assert (headers["task"], headers["id"], headers["baton_call_id"]) == (
        "shop.charge",
        "t-1",
        "i1.0",
    )
    assert headers["expires"]  # an ISO time: a worker that gets it later drops it
    assert envelope["properties"]["delivery_info"] == {"exchange": "shop", "routing_key": "shop"}


def _spec(app: Any) -> ToolSpec:
    model = create_model("charge_args")
    remote = RemoteTask("shop.charge", "shop", None, app)
    return ToolSpec(
        "charge", lambda: None, model, None, "shop", None, NO_RETRY, None, "", remote=remote
    )


class _Backend:
    serializer = "json"

    def __init__(self, stored: dict[str, Any] | None) -> None:
        self.stored = stored

    def get_key_for_task(self, task_id: str) -> str:
        return f"celery-task-meta-{task_id}"

    def get(self, key: str) -> bytes | None:
        return None if self.stored is None else json.dumps(self.stored).encode()


def test_a_stored_failure_comes_back_as_a_tool_error_of_its_type() -> None:
    stored = {
        "status": "FAILURE",
        "result": {"exc_type": "CardDeclined", "exc_message": ["declined"], "exc_module": "shop"},
        "traceback": "Traceback ...",
    }
    error = failure_of(_spec(SimpleNamespace(backend=_Backend(stored))), "t-1", 2)
    assert (error.type, error.message, error.attempts) == ("CardDeclined", "declined", 2)
    assert error.traceback == "Traceback ..." and error.original is not None
    assert error.original.type == "shop:CardDeclined"


def test_without_a_stored_result_the_failure_names_the_task() -> None:
    error = failure_of(_spec(SimpleNamespace(backend=_Backend(None))), "t-9", 1)
    assert error.type == "TaskFailed" and "shop.charge[t-9]" in error.message


def test_tool_from_task_refuses_what_it_cannot_validate_in_one_line() -> None:
    with pytest.raises(ValueError, match="parameter\\(s\\) items cannot be validated"):
        tool_from_task(varargs)
    with pytest.raises(ValueError, match="takes no keyword 'key'"):
        tool_from_task(plain, key_kwarg="key")


def test_baton_run_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="start must be a dict"):
        baton_run("Checkout", start=[1], queue="baton")  # type: ignore[arg-type]


def test_a_start_event_comes_from_the_previous_result() -> None:
    from examples.pipeline import Pipeline

    field = next(iter(Pipeline.spec.start_event.model_fields))
    assert getattr(start_event(Pipeline.name, "x y", {}, field), field) == "x y"
    with pytest.raises(InvalidInputError, match="returned int, not an object"):
        start_event(Pipeline.name, 3, {}, None)
