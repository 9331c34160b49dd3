"""Timer entries: what the timer sorted set holds until it is due (``tasks.timers``)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from tasks.protocol._json import compact
from workflows.errors import PayloadError

ANSWER_MARK = "\t"  # first character of a TimerAnswer member (a queue key never starts so)


@dataclass(frozen=True, slots=True)
class TimerEntry:
    """A delayed task message (a retry's backoff): pushed onto its queue list once due.

    Wire: ``queue_key + "\\n" + envelope``: the queue list and the framed kombu envelope
    (compact JSON, which never holds a raw newline). The RELEASE script splits it at the first
    newline; the envelope's task id makes every member unique."""

    queue_key: str
    envelope: str

    def dump(self) -> str:
        if "\n" in self.queue_key or self.queue_key.startswith(ANSWER_MARK):
            raise ValueError(f"not a queue key: {self.queue_key!r}")
        return f"{self.queue_key}\n{self.envelope}"


@dataclass(frozen=True, slots=True)
class TimerAnswer:
    """A ``ctx.sleep``: once due, the call ``call_id`` of a parked invocation is answered with
    ``entry`` (a ``JournalEntry``'s JSON) the way COMPLETE answers a tool call; the last answer
    resumes the step (recorded in ``inflight``).

    Wire: ``"\\t" + [journal key, wait key, in-flight key, call id, entry]`` (compact JSON);
    one call id of one invocation per member, so parking the same sleep twice adds it once."""

    journal: str
    wait: str
    inflight: str
    call_id: str
    entry: str

    def dump(self) -> str:
        fields = [self.journal, self.wait, self.inflight, self.call_id, self.entry]
        return ANSWER_MARK + compact(fields)


def parse_timer(member: str) -> TimerEntry | TimerAnswer:
    """A timer set member as its record; anything else is a PayloadError."""
    if member.startswith(ANSWER_MARK):
        try:
            journal, wait, inflight, call_id, entry = json.loads(member[1:])
            return TimerAnswer(str(journal), str(wait), str(inflight), str(call_id), str(entry))
        except (TypeError, ValueError) as exc:
            raise PayloadError(f"not a timer answer: {member[:200]}") from exc
    queue_key, sep, envelope = member.partition("\n")
    if not sep or not queue_key or not envelope:
        raise PayloadError(f"not a timer entry: {member[:200]}")
    return TimerEntry(queue_key, envelope)
