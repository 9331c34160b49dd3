"""The Lua ``COLLECT`` script and ``core.collect_match`` decide every fan-in the same way.

The Celery runtime decides ``ctx.collect_events`` with the Lua script, atomically in Redis; the
in-process runtime with ``collect_match`` over a Python list. Both are fed the same arrivals here
(each arrival a new call id, as each fan-in event arrives in its own step invocation) and must
agree after every arrival: whether the set is complete, which events it took, and what stays
buffered. The script returns the taken events in arrival order and ``collect_match`` in expected
order; the contract is the order after ``core.arrange``, which both readers apply.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from tasks import scripts
from tests.harness import RedisServer
from workflows import Event
from workflows._engine.core import arrange, collect_match
from workflows.codec import decode_event, dumps

pytestmark = pytest.mark.integration


class LuaAgreeA(Event):
    n: int


class LuaAgreeB(Event):
    n: int


class LuaAgreeC(Event):
    n: int


KINDS: dict[str, type[Event]] = {"A": LuaAgreeA, "B": LuaAgreeB, "C": LuaAgreeC}
TAG = {letter: cls.type_tag for letter, cls in KINDS.items()}
LETTER = {tag: letter for letter, tag in TAG.items()}
TTL = 600


@pytest.fixture(scope="module")
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(scope="module")
def collect_script(r: redis.Redis) -> Any:
    return r.register_script(scripts.COLLECT)


Answer = list[str] | None  # the taken envelopes (JSON text), or None: not all in yet


class LuaCollect:
    """One fan-in buffer in Redis, driven through the script as ``tasks.backend`` drives it."""

    def __init__(self, r: redis.Redis, script: Any) -> None:
        base = f"test:collect-agree:{uuid.uuid4().hex}"
        self.r, self.script = r, script
        self.journal, self.buffer, self.counts = f"{base}:j", f"{base}:buf", f"{base}:cnt"

    def raw(self, call_id: str, tag: str, envelope: str, expected: Sequence[str]) -> str:
        counts: dict[str, int] = {}
        for t in expected:  # (tag, count) pairs, as the Celery backend builds them
            counts[t] = counts.get(t, 0) + 1
        pairs = [x for t, n in counts.items() for x in (t, n)]
        answer = self.script(
            keys=[self.journal, self.buffer, self.counts],
            args=[call_id, tag, envelope, TTL, *pairs],
        )
        assert isinstance(answer, str)
        return answer

    def arrive(self, call_id: str, tag: str, envelope: str, expected: Sequence[str]) -> Answer:
        ok = json.loads(self.raw(call_id, tag, envelope, expected))["ok"]
        return None if ok is None else [dumps(e) for e in ok]  # re-serialized: same text

    def buffered(self) -> list[tuple[str, str]]:
        items: list[str] = self.r.lrange(self.buffer, 0, -1)  # type: ignore[assignment]
        return [(item.split("\n", 1)[0], item.split("\n", 1)[1]) for item in items]

    def count_table(self) -> Counter[str]:
        raw: dict[str, str] = self.r.hgetall(self.counts)  # type: ignore[assignment]
        return Counter({tag: int(n) for tag, n in raw.items() if int(n) != 0})

    def cleanup(self) -> None:
        self.r.delete(self.journal, self.buffer, self.counts)


@dataclass
class PyCollect:
    """The same buffer as the in-process runtime keeps it: a list, decided by collect_match."""

    buffer: list[tuple[str, str]] = field(default_factory=list)
    journal: dict[str, Answer] = field(default_factory=dict)

    def arrive(self, call_id: str, tag: str, envelope: str, expected: Sequence[str]) -> Answer:
        if call_id in self.journal:  # a replayed call gets its recorded answer
            return self.journal[call_id]
        self.buffer.append((tag, envelope))
        chosen = collect_match([t for t, _ in self.buffer], expected)
        answer = None if chosen is None else [self.buffer[i][1] for i in chosen]
        if chosen is not None:
            used = set(chosen)
            self.buffer = [b for i, b in enumerate(self.buffer) if i not in used]
        self.journal[call_id] = answer
        return answer


def events(envelopes: Sequence[str]) -> list[Event]:
    return [decode_event(json.loads(e)) for e in envelopes]


@dataclass
class Step:
    """One arrival: a new event of type ``letter``, or (``replay``) an earlier call id again."""

    letter: str
    expected: str  # letters, e.g. "AAB"
    replay: str | None = None


def drive(lua: LuaCollect, steps: Sequence[Step]) -> list[tuple[bool, list[str]]]:
    """Feed both sides; check they agree after each arrival. Returns (complete, leftover)."""
    py = PyCollect()
    history: list[tuple[bool, list[str]]] = []
    for i, st in enumerate(steps):
        call_id = st.replay or f"call-{i}"
        tag = TAG[st.letter]
        envelope = dumps(KINDS[st.letter](n=i))
        expected = [TAG[x] for x in st.expected]
        where = f"after arrival {i} of {[(s.letter, s.expected, s.replay) for s in steps]}"
        got_lua = lua.arrive(call_id, tag, envelope, expected)
        got_py = py.arrive(call_id, tag, envelope, expected)
        assert (got_lua is None) == (got_py is None), f"completeness differs {where}"
        if got_lua is not None and got_py is not None:
            assert sorted(got_lua) == sorted(got_py), f"different events taken {where}"
            assert arrange(events(got_lua), expected) == arrange(events(got_py), expected), where
            assert [type(e).type_tag for e in arrange(events(got_lua), expected)] == expected
        assert lua.buffered() == py.buffer, f"leftover buffer differs {where}"
        assert lua.count_table() == Counter(t for t, _ in py.buffer), f"counts drift {where}"
        leftover = [LETTER[t] for t, _ in py.buffer]
        history.append((got_py is not None, leftover))
    return history


def arrivals(expected: str, sequence: str) -> list[Step]:
    return [Step(letter, expected) for letter in sequence]


# expected letters, arrival letters, when the set completes ("x" = this arrival completes it),
# and what stays buffered at the end — written down by hand, so both sides are also checked
# against the intended rule, not only against each other.
FIXED = [
    pytest.param("AB", "AB", ".x", "", id="in expected order"),
    pytest.param("AB", "BA", ".x", "", id="in reverse order"),
    pytest.param("AB", "AAB", "..x", "A", id="of duplicates the oldest is taken, the rest stays"),
    pytest.param("AAB", "ABA", "..x", "", id="a repeated expected type waits for all of them"),
    pytest.param("AAB", "AABAAB", "..x..x", "", id="two complete sets in a row"),
    pytest.param("AC", "AABB", "....", "AABB", id="a type that never comes keeps everything"),
    pytest.param("A", "CACA", ".x.x", "CC", id="strays stay buffered across completions"),
    pytest.param("ABB", "BABABBA", "..x..x.", "A", id="interleaved surplus"),
    pytest.param("", "AB", "xx", "AB", id="nothing expected: complete at once, nothing taken"),
    pytest.param("CCC", "CCCCCC", "..x..x", "", id="one type, many"),
    pytest.param("ABC", "CCBBA", "....x", "CB", id="the oldest of each type, late"),
    pytest.param("ABC", "CCBBAA", "....xx", "", id="the surplus completes the next set"),
]


@pytest.mark.parametrize(("expected", "sequence", "completes", "left"), FIXED)
def test_lua_and_python_agree_on_fixed_sequences(
    r: redis.Redis, collect_script: Any, expected: str, sequence: str, completes: str, left: str
) -> None:
    lua = LuaCollect(r, collect_script)
    try:
        history = drive(lua, arrivals(expected, sequence))
    finally:
        lua.cleanup()
    assert "".join("x" if done else "." for done, _ in history) == completes
    assert "".join(history[-1][1]) == left


def test_lua_and_python_agree_on_random_sequences(r: redis.Redis, collect_script: Any) -> None:
    rng = random.Random(1234)
    completed = 0
    for _ in range(200):
        alphabet = rng.choice(["AB", "ABC", "ABC", "BC"])  # sometimes a type never arrives
        expected = "".join(rng.choices("ABC", k=rng.randint(1, 4)))
        steps: list[Step] = []
        for _ in range(rng.randint(0, 14)):
            if steps and rng.random() < 0.2:  # a redelivered invocation replays its call id
                earlier = rng.randrange(len(steps))
                steps.append(Step(rng.choice(alphabet), expected, f"call-{earlier}"))
            else:
                steps.append(Step(rng.choice(alphabet), expected))
        lua = LuaCollect(r, collect_script)
        try:
            completed += sum(done for done, _ in drive(lua, steps))
        finally:
            lua.cleanup()
    assert completed > 100  # the generator does reach complete sets, often


def test_lua_and_python_agree_when_expectations_differ_on_one_buffer(
    r: redis.Redis, collect_script: Any
) -> None:
    """An explicit ``buffer_id`` lets steps with different expected lists share a buffer."""
    rng = random.Random(99)
    for _ in range(60):
        choices = ["AB", "A", "BBC", "CA", "AAB"]
        steps = [Step(rng.choice("ABC"), rng.choice(choices)) for _ in range(rng.randint(1, 12))]
        lua = LuaCollect(r, collect_script)
        try:
            drive(lua, steps)
        finally:
            lua.cleanup()


def test_replaying_a_call_id_returns_its_answer_and_buffers_nothing(
    r: redis.Redis, collect_script: Any
) -> None:
    lua = LuaCollect(r, collect_script)
    a, b, a2 = dumps(LuaAgreeA(n=1)), dumps(LuaAgreeB(n=2)), dumps(LuaAgreeA(n=3))
    ta, tb = TAG["A"], TAG["B"]
    need = [ta, tb]
    try:
        assert lua.raw("c1", ta, a, need) == '{"ok":null}'
        assert lua.raw("c1", ta, a, need) == '{"ok":null}'  # redelivered: same answer
        assert lua.buffered() == [(ta, a)]  # ... and buffered once
        assert lua.count_table() == Counter({ta: 1})

        done = lua.raw("c2", tb, b, need)
        assert json.loads(done) == {"ok": [json.loads(a), json.loads(b)]}
        assert lua.raw("c2", tb, b, need) == done  # the winner replays the same set
        assert lua.buffered() == [] and lua.count_table() == Counter()

        # a replay after the set was taken: still "not yet", and its event is not buffered again
        assert lua.raw("c1", ta, a, need) == '{"ok":null}'
        assert lua.raw("c1", ta, a2, need) == '{"ok":null}'  # whatever the replay carries
        assert lua.buffered() == [] and lua.count_table() == Counter()

        assert lua.raw("c3", ta, a2, need) == '{"ok":null}'  # a fresh call does buffer
        assert lua.buffered() == [(ta, a2)]
        assert r.hgetall(lua.journal) == {"c1": '{"ok":null}', "c2": done, "c3": '{"ok":null}'}
    finally:
        lua.cleanup()


def test_replay_agrees_with_the_python_journal(r: redis.Redis, collect_script: Any) -> None:
    steps = [
        Step("A", "AB"),
        Step("A", "AB", replay="call-0"),
        Step("B", "AB"),
        Step("B", "AB", replay="call-2"),
        Step("A", "AB", replay="call-0"),
        Step("B", "AB"),
        Step("A", "AB"),
    ]
    lua = LuaCollect(r, collect_script)
    try:
        history = drive(lua, steps)
    finally:
        lua.cleanup()
    assert [done for done, _ in history] == [False, False, True, True, False, False, True]
    assert history[-1][1] == []


def test_a_completion_keeps_a_leftover_larger_than_one_push_chunk_in_order(
    r: redis.Redis, collect_script: Any
) -> None:
    """The script re-pushes the rest 1000 items at a time; 2,500 strays cross two boundaries."""
    lua = LuaCollect(r, collect_script)
    py = PyCollect()
    need = [TAG["A"]]
    try:
        pipe = r.pipeline(transaction=False)
        for i in range(2500):
            env = dumps(LuaAgreeC(n=i))
            collect_script(
                keys=[lua.journal, lua.buffer, lua.counts],
                args=[f"s{i}", TAG["C"], env, TTL, TAG["A"], 1],
                client=pipe,
            )
            py.arrive(f"s{i}", TAG["C"], env, need)
        assert all(a == '{"ok":null}' for a in pipe.execute())
        a = dumps(LuaAgreeA(n=-1))
        assert lua.arrive("last", TAG["A"], a, need) == py.arrive("last", TAG["A"], a, need) == [a]
        assert len(py.buffer) == 2500
        assert lua.buffered() == py.buffer
        assert lua.count_table() == Counter({TAG["C"]: 2500})
    finally:
        lua.cleanup()
