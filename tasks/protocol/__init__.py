"""Every record that crosses the wire or sits in Redis, named and typed, with parse and dump.

What travels: task messages (:class:`Message` with :class:`StepArgs` or :class:`ToolArgs`),
call addresses (:class:`CallAddress`: where an answer goes), waiter records, run-log entries
(:class:`LogKind`, :func:`log_fields`, :func:`parse_entry`), run hashes (:class:`RunRecord`),
in-flight records, timers (:class:`TimerEntry`, :class:`TimerAnswer`), dead letters and spans
(:class:`Span`: what one delivery did). Journal entries are :class:`JournalEntry` (shared with
the in-process runtime). ``docs/distributed.md`` lists them with the Redis keys and the Lua
scripts' contracts; ``tests/unit/test_wire_format.py`` pins each shape.
"""

from tasks.protocol._json import compact
from tasks.protocol.messages import (
    TOOL_TASK_PREFIX,
    InflightRecord,
    Message,
    StepArgs,
    TaskArgs,
    ToolArgs,
    dump_messages,
    parse_messages,
)
from tasks.protocol.outbox import OutboxEntry
from tasks.protocol.runlog import (
    END_KINDS,
    EVENT_KINDS,
    USER_KINDS,
    LogEntry,
    LogKind,
    RetryNote,
    RunStatus,
    log_fields,
    parse_entry,
)
from tasks.protocol.spans import Span, SpanKind, SpanOutcome, Where, error_line
from tasks.protocol.state import (
    EFFECTS_FIELD,
    CallAddress,
    DeadLetter,
    RunRecord,
    WaiterRecord,
    journal_fields,
    parse_journal_hash,
)
from tasks.protocol.timers import TimerAnswer, TimerEntry, parse_timer
from workflows._engine.records import JournalEntry

__all__ = [
    "EFFECTS_FIELD",
    "END_KINDS",
    "EVENT_KINDS",
    "TOOL_TASK_PREFIX",
    "USER_KINDS",
    "CallAddress",
    "DeadLetter",
    "InflightRecord",
    "JournalEntry",
    "LogEntry",
    "LogKind",
    "Message",
    "OutboxEntry",
    "RetryNote",
    "RunRecord",
    "RunStatus",
    "Span",
    "SpanKind",
    "SpanOutcome",
    "StepArgs",
    "TaskArgs",
    "TimerAnswer",
    "TimerEntry",
    "ToolArgs",
    "WaiterRecord",
    "Where",
    "compact",
    "dump_messages",
    "error_line",
    "journal_fields",
    "log_fields",
    "parse_entry",
    "parse_journal_hash",
    "parse_messages",
    "parse_timer",
]
