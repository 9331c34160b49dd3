"""Per-process resources have one owner: nothing Baton installs outlives its use or leaks into a
process that did not ask for it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

from celery import Celery

from config import Settings
from tasks.runtime import Runtime
from tests.harness import ROOT
from workflows import Context, StartEvent, StopEvent, Workflow, step
from workflows._engine.backend import Invocation
from workflows._engine.executor import Completed, branch_path, execute


class OwnGather(Workflow):
    @step
    async def go(self, ctx: Context, ev: StartEvent) -> StopEvent:
        async def one(n: int) -> int:
            await asyncio.sleep(0)
            return n

        return StopEvent(result=sum(await asyncio.gather(one(1), one(2))))


def test_an_in_process_run_leaves_the_callers_task_factory_as_it_found_it() -> None:
    async def main() -> tuple[object, object, int]:
        loop = asyncio.get_running_loop()
        before = loop.get_task_factory()
        result = await OwnGather().run()
        return before, loop.get_task_factory(), result

    before, after, result = asyncio.run(main())
    assert result == 3
    assert after is before is None


def test_a_callers_own_task_factory_is_kept_and_still_used_during_a_run() -> None:
    created: list[str] = []

    def factory(
        loop: asyncio.AbstractEventLoop, coro: object, **kw: object
    ) -> asyncio.Task[object]:
        created.append(getattr(coro, "__name__", "?"))
        return asyncio.Task(coro, loop=loop, **kw)  # type: ignore[arg-type]

    async def main() -> object:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)  # type: ignore[arg-type]
        await OwnGather().run()
        return loop.get_task_factory()

    assert asyncio.run(main()) is factory
    assert "one" in created  # the step's gather branches went through the caller's factory


def test_each_thread_gets_its_own_event_loop_from_the_runtime() -> None:
    rt = Runtime(Settings(), Celery("own", set_as_current=False))
    barrier = threading.Barrier(2)
    loops: list[asyncio.AbstractEventLoop] = []

    async def meet() -> None:
        loops.append(asyncio.get_running_loop())
        await asyncio.to_thread(barrier.wait, 5)  # both loops are running at once here

    threads = [threading.Thread(target=rt.run, args=(meet(),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(loops) == 2 and loops[0] is not loops[1]


def test_a_plain_client_installs_no_worker_hooks_and_patches_nothing() -> None:
    probe = (
        "from celery import signals\n"
        "from kombu.transport import redis as k\n"
        "from app.client import Client\n"
        "from config import Settings\n"
        "Client(Settings(redis_url='redis://127.0.0.1:1/0'))\n"
        "assert not getattr(k.QoS.restore_unacked, 'baton_guarded', False), 'kombu patched'\n"
        "assert not signals.task_rejected.receivers, 'dead-letter hook installed'\n"
        "assert not signals.worker_ready.receivers, 'reaper installed'\n"
        "print('clean')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


class TwoAtOnce(Workflow):
    gate: asyncio.Event

    @step
    async def go(self, ev: StartEvent) -> StopEvent:
        await self.gate.wait()

        async def where() -> str:
            await asyncio.sleep(0)
            return branch_path()

        return StopEvent(result=list(await asyncio.gather(where(), where())))


def test_steps_running_at_once_on_one_loop_keep_their_branch_paths_when_one_ends_first() -> None:
    """An asyncio worker runs many steps on one loop: the first to end must not take the branch
    tracker away from the others (their call ids would then depend on interleaving)."""

    async def main() -> list[object]:
        spec = TwoAtOnce.spec.steps["go"]
        first, second = TwoAtOnce(), TwoAtOnce()
        first.gate, second.gate = asyncio.Event(), asyncio.Event()
        runs = [
            asyncio.create_task(execute(wf, spec, None, Invocation(name, "go", StartEvent())))
            for name, wf in (("a", first), ("b", second))
        ]
        await asyncio.sleep(0)
        first.gate.set()
        done_first = await runs[0]
        second.gate.set()
        return [done_first, await runs[1]]

    outcomes = asyncio.run(main())
    results = [
        e.result
        for o in outcomes
        if isinstance(o, Completed)
        for e in o.emitted.events
        if isinstance(e, StopEvent)
    ]
    assert results == [["0", "1"], ["0", "1"]]
