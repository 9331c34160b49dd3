"""A step's rate and concurrency limits in the in-process runtime: per process, not global.

The rate is the tools' in-process limiter (:func:`workflows.rate_limit.wait_turn`, FIFO per
key), charged once per attempt: the attempt that took its turn is noted among the
invocation's applied effects (:data:`RATE_STARTED`, as the distributed runtime does), so a
step resumed after a wait is not charged again. The concurrency limit is an asyncio
semaphore per event loop, step and key, held only while the step's code runs: a parked step
holds none.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from workflows._engine.backend import Invocation
from workflows._engine.executor import Failed, Outcome
from workflows.rate_limit import wait_turn
from workflows.step import StepSpec

# in an invocation's applied effects (the journal's ``__fx`` distributed): the attempt whose
# start the rate limit charged; a later delivery of that attempt (a resume) is not charged
RATE_STARTED = "@rate"

# per loop: (step, key) -> [semaphore, users]; an entry goes when its last user leaves
_PERMITS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str], tuple[asyncio.Semaphore, list[int]]]
] = weakref.WeakKeyDictionary()


async def run_limited(
    step: StepSpec, inv: Invocation, run: Callable[[], Awaitable[Outcome]]
) -> Outcome:
    """``run()`` (one execution of the step) under the step's limits, if it has any; a key
    function that raises is a failure of the attempt, like the step's own error."""
    opts = step.options
    if opts.rate is None and opts.concurrency is None:
        return await run()
    try:
        rate_key = step.rate_key_of(inv.event) if opts.rate is not None else ""
        concurrency_key = step.concurrency_key_of(inv.event) if opts.concurrency else ""
    except Exception as exc:
        return Failed(exc)
    if opts.rate is not None and inv.effects_done.get(RATE_STARTED) != inv.attempt:
        await wait_turn(f"step {step.qualname}", rate_key, opts.rate)
        inv.effects_done[RATE_STARTED] = inv.attempt
    if opts.concurrency is None:
        return await run()
    async with _permit(step.qualname, concurrency_key, opts.concurrency):
        return await run()


@asynccontextmanager
async def _permit(step: str, key: str, n: int) -> AsyncIterator[None]:
    """One of the ``n`` permits of ``(step, key)`` in this process (FIFO: asyncio's
    semaphore wakes its waiters in order)."""
    permits = _PERMITS.setdefault(asyncio.get_running_loop(), {})
    sem, users = permits.setdefault((step, key), (asyncio.Semaphore(n), [0]))
    users[0] += 1
    try:
        async with sem:
            yield
    finally:
        users[0] -= 1
        if not users[0]:
            del permits[(step, key)]
