"""Golden formats: every record that crosses the wire or sits in Redis, byte for byte.

A change here is a protocol change: old messages and stored runs would no longer read. Change
a golden string only together with a migration note in docs/distributed.md.
"""

from __future__ import annotations

import base64
import json

import pytest
from celery import Celery

from tasks.protocol import (
    CallAddress,
    DeadLetter,
    InflightRecord,
    LogKind,
    Message,
    RetryNote,
    RunRecord,
    RunStatus,
    StepArgs,
    ToolArgs,
    WaiterRecord,
    compact,
    dump_messages,
    journal_fields,
    log_fields,
    parse_entry,
    parse_journal_hash,
    parse_messages,
)
from tasks.publish import ARGSREPR_MAX, Publisher, argsrepr
from workflows import Event
from workflows._engine.records import EntryKind, JournalEntry
from workflows.errors import ErrorInfo, PayloadError


class WireProbe(Event):
    type_tag = "WireProbe"
    n: int


ENVELOPE = {"type": "WireProbe", "data": {"n": 1}}


@pytest.mark.parametrize(
    ("entry", "golden"),
    [
        (JournalEntry.ok(3), '{"ok":3}'),
        (JournalEntry.ok(None), '{"ok":null}'),  # a fan-in that is not complete yet
        (JournalEntry.ok([ENVELOPE]), '{"ok":[{"type":"WireProbe","data":{"n":1}}]}'),
        (
            JournalEntry.error(ErrorInfo(type="ToolError", message="no", attempts=2)),
            '{"error":{"type":"ToolError","message":"no","attempts":2,"retryable":true,'
            '"details":{}}}',
        ),
        (JournalEntry.event(ENVELOPE), '{"event":{"type":"WireProbe","data":{"n":1}}}'),
        (JournalEntry.missing(), '{"missing":true}'),
    ],
)
def test_journal_entries_have_one_key_naming_their_kind(entry: JournalEntry, golden: str) -> None:
    assert entry.to_json() == golden
    assert JournalEntry.from_json(golden) == entry


@pytest.mark.parametrize("bad", ['{"ok":1,"error":{}}', '{"maybe":1}', "[1]", "not json"])
def test_a_malformed_journal_entry_is_a_payload_error(bad: str) -> None:
    with pytest.raises(PayloadError):
        JournalEntry.from_json(bad)


def test_failed_entries_are_the_ones_forgotten_before_a_retry() -> None:
    kinds = {
        e.kind: e.failed
        for e in (JournalEntry.ok(1), JournalEntry.error(ErrorInfo(type="X", message="")))
    }
    assert kinds == {EntryKind.OK: False, EntryKind.ERROR: True}


def test_a_journal_hash_keeps_entries_and_the_effect_counts_apart() -> None:
    journal = {"inv.1": JournalEntry.ok(1), "inv.2": JournalEntry.missing()}
    fields = journal_fields(journal, {"": 2, "0": 1}, skip={"inv.1"})
    assert fields == {"inv.2": '{"missing":true}', "__fx": '{"":2,"0":1}'}
    parsed, effects = parse_journal_hash({**fields, "inv.1": '{"ok":1}'})
    assert parsed == journal
    assert effects == {"": 2, "0": 1}


def test_step_and_tool_messages_store_as_positional_lists_with_their_countdown() -> None:
    step = Message("Flow.go", StepArgs("r1", "i1", ENVELOPE, 2), "baton", "t1", 1.5, None, 20.0)
    tool = Message(
        "tool.add", ToolArgs("r1", "i1", "i1.3", {"a": 1}), "tools", "t2", None, 6.0, 11.0
    )
    assert step.to_json() == (
        '["Flow.go",["r1","i1",{"type":"WireProbe","data":{"n":1}},2],"baton","t1",1.5,null,20.0]'
    )
    assert tool.to_json() == '["tool.add",["r1","i1","i1.3",{"a":1},1],"tools","t2",null,6.0,11.0]'
    assert Message.from_json(step.to_json()) == step
    assert Message.from_json(tool.to_json()) == tool
    assert parse_messages(dump_messages([step, tool])) == [step, tool]
    assert tool.run_id == "r1" and isinstance(Message.from_json(tool.to_json()).args, ToolArgs)


def test_step_args_carry_the_first_start_as_a_fifth_element_only_when_it_is_set() -> None:
    # a first attempt and its resumes: the four elements a worker older than the field takes
    first = StepArgs("r1", "i1", ENVELOPE, 1)
    assert first.wire() == ["r1", "i1", ENVELOPE, 1]
    # a retry (and the resumes of a retried step): the first attempt's wall-clock start
    retry = StepArgs("r1", "i1", ENVELOPE, 2, 1700000000.25)
    assert compact(retry.wire()) == (
        '["r1","i1",{"type":"WireProbe","data":{"n":1}},2,1700000000.25]'
    )
    assert StepArgs.from_wire(first.wire()) == first
    assert StepArgs.from_wire(retry.wire()) == retry
    # a 4-element retry, from a Baton before the field: its start is unknown
    assert StepArgs.from_wire(["r1", "i1", ENVELOPE, 3]).first_started is None
    with pytest.raises(PayloadError):
        Message.parse(["Flow.go", [*retry.wire(), "extra"], "baton", "t1", None, None, None])


def test_a_malformed_message_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        Message.from_json('["Flow.go",["r1"],"baton"]')


def test_a_framed_message_is_a_celery_protocol_2_envelope_with_positional_args() -> None:
    app = Celery("wire", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    message = Message("Flow.go", StepArgs("r1", "i1", ENVELOPE), "baton", "t1", None, None, 20.0)
    key, raw = Publisher(app, "pfx:q:").frame(message)
    envelope = json.loads(raw)
    body = json.loads(base64.b64decode(envelope["body"]))
    assert key == "pfx:q:baton"
    assert body[0] == ["r1", "i1", ENVELOPE, 1] and body[1] == {}
    assert envelope["headers"]["task"] == "Flow.go"
    assert envelope["headers"]["id"] == "t1"
    # limits are the running worker's (task defaults), never the sender's
    assert envelope["headers"]["timelimit"] == [None, None]
    assert envelope["properties"]["delivery_info"] == {"exchange": "baton", "routing_key": "baton"}
    assert envelope["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("message", "golden"),
    [
        (
            Message("Research.score", StepArgs("r1", "i1", ENVELOPE), "baton", "t1"),
            "r1 Research.score inv=i1 attempt=1",
        ),
        (
            Message("Research.score", StepArgs("r1", "i1", [ENVELOPE], 3, 9.5), "baton", "t1"),
            "r1 Research.score inv=i1 attempt=3",
        ),
        (
            Message("tool.search", ToolArgs("r1", "i1", "i1.2", {"q": "x"}, 2), "tools", "t2"),
            "r1 tool search inv=i1 call=i1.2 attempt=2",
        ),
        (
            Message("tool.search", ToolArgs("r1", "i1", "i1.2", {}, 2), "tools", "t2", 1.5),
            "r1 tool search inv=i1 call=i1.2 attempt=2 delayed=1.5s",
        ),
    ],
)
def test_argsrepr_starts_with_the_run_id_and_what_runs_and_leaves_out_the_payload(
    message: Message, golden: str
) -> None:
    app = Celery("wire", set_as_current=False)
    envelope = json.loads(Publisher(app, "pfx:q:").frame(message)[1])
    assert envelope["headers"]["argsrepr"] == golden
    assert envelope["headers"]["kwargsrepr"] == "{}"


def test_argsrepr_stays_short_whatever_the_ids() -> None:
    long_id = "r" * 500
    message = Message("tool.search", ToolArgs(long_id, "i1", "c", {}), "tools")
    assert argsrepr(message) == long_id[:ARGSREPR_MAX]


def test_an_inflight_record_is_the_due_time_and_the_message() -> None:
    message = Message("tool.add", ToolArgs("r1", "i1", "c", {}), "tools", "t2")
    record = InflightRecord(12.5, message)
    assert (
        record.to_json() == '[12.5,["tool.add",["r1","i1","c",{},1],"tools","t2",null,null,null]]'
    )
    assert InflightRecord.from_json(record.to_json()) == record


def test_log_entries_are_kind_payload_and_the_child_run_they_came_from() -> None:
    assert log_fields(LogKind.STREAM, '{"x":1}') == {"k": "stream", "e": '{"x":1}'}
    assert log_fields(LogKind.INPUT, "{}", run="child") == {"k": "input", "e": "{}", "r": "child"}
    entry = parse_entry("1700000000000-0", {"k": "retry", "e": '{"a":1}', "r": "c"})
    assert (entry.kind, entry.data, entry.run, entry.ms) == (
        LogKind.RETRY,
        {"a": 1},
        "c",
        1700000000000,
    )
    assert [k.value for k in LogKind] == [
        "event",
        "stream",
        "input",
        "stop",
        "failed",
        "cancelled",
        "retry",
    ]


def test_an_unknown_log_kind_is_a_payload_error() -> None:
    with pytest.raises(PayloadError):
        parse_entry("1-0", {"k": "bogus", "e": "{}"})


def test_retry_notes_have_one_shape_for_steps_and_tools() -> None:
    note = RetryNote(
        what="tool", name="add", attempt=2, error=ErrorInfo(type="ValueError", message="x")
    )
    assert json.loads(note.model_dump_json()) == {
        "what": "tool",
        "name": "add",
        "attempt": 2,
        "error": {
            "type": "ValueError",
            "message": "x",
            "attempts": 1,
            "retryable": True,
            "details": {},
        },
    }


def test_call_addresses_and_waiters_are_flat_json_objects() -> None:
    address = CallAddress("r1", "i1", "i1.2")
    assert address.to_json() == '{"run":"r1","inv":"i1","call_id":"i1.2"}'
    assert CallAddress.from_field(address.to_json()) == address
    assert CallAddress.from_field("") is None
    waiter = WaiterRecord(address, "WireProbe", {"n": 1})
    assert waiter.field == "r1|i1.2"
    assert waiter.to_json() == (
        '{"run":"r1","inv":"i1","call_id":"i1.2","tag":"WireProbe","requirements":{"n":1}}'
    )
    assert WaiterRecord.from_json(waiter.to_json()) == waiter
    assert waiter.matches(WireProbe(n=1)) and not waiter.matches(WireProbe(n=2))


def test_a_run_record_reads_back_from_its_hash() -> None:
    parent = CallAddress("p", "i", "i.1")
    record = RunRecord(
        "r1", "Flow", RunStatus.RUNNING, 1.0, 2.0, "root", parent, None, "{}", module="pkg.flows"
    )
    fields = record.fields()
    assert fields == {
        "workflow": "Flow",
        "status": "running",
        "input": "{}",
        "created": 1.0,
        "updated": 2.0,
        "root": "root",
        "parent": '{"run":"p","inv":"i","call_id":"i.1"}',
        "deadline": "",
        "module": "pkg.flows",
    }
    raw = {k: str(v) for k, v in fields.items()}
    raw["error"] = '{"type":"X","message":"m","attempts":1,"retryable":true,"details":{}}'
    back = RunRecord.parse("r1", raw)
    assert back.parent == parent and back.deadline is None and back.error is not None
    assert back.module == "pkg.flows"
    with pytest.raises(PayloadError):
        RunRecord.parse("r1", {"workflow": "Flow", "status": "weird"})


def test_dead_letters_keep_reason_headers_and_body() -> None:
    letter = DeadLetter("unknown task 'x'", {"task": "x"}, "body")
    assert json.loads(letter.to_json()) == {
        "reason": "unknown task 'x'",
        "headers": {"task": "x"},
        "body": "body",
    }
    assert DeadLetter.from_json(letter.to_json()) == letter
