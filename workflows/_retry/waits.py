"""Wait strategies: the seconds to wait before a retry.

A strategy is called with ``attempts`` counted from 0 for the first retry (a policy's ``next``
counts failures from 1 and passes one less) and an optional ``seed``: given one, a random
strategy draws from ``random.Random(seed)``, so the same seed gives the same delay. Strategies
add up with ``+`` (and ``sum()``); :class:`wait_chain` uses one per retry.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Protocol, cast

time_unit_type = int | float | timedelta


def to_seconds(value: time_unit_type) -> float:
    """Seconds in a number or a timedelta."""
    return float(value.total_seconds() if isinstance(value, timedelta) else value)


def _rng(seed: int | None) -> random.Random:
    # the module's own generator when unseeded: the same draws as ``random.uniform``
    return random.Random(seed) if seed is not None else cast(random.Random, random)


def _exponential(multiplier: float, base: float, attempts: int) -> float:
    try:
        return multiplier * base**attempts
    except OverflowError:  # after ~1000 retries: as long as any cap allows
        return float("inf")


class WaitStrategy(Protocol):
    """Seconds to wait before retry number ``attempts`` (0 for the first retry)."""

    def __call__(self, attempts: int, /, *, seed: int | None = None) -> float: ...


class _Wait:
    """A strategy that adds up with ``+`` and ``sum()``."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        raise NotImplementedError

    def __add__(self, other: WaitStrategy) -> wait_combine:
        return wait_combine(self, other)

    def __radd__(self, other: object) -> object:
        if other == 0:  # sum()'s start value
            return self
        if callable(other):
            return wait_combine(self, cast(WaitStrategy, other))
        return NotImplemented


class wait_fixed(_Wait):
    """The same wait before every retry."""

    def __init__(self, wait: time_unit_type) -> None:
        self.wait = to_seconds(wait)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return self.wait


class wait_none(wait_fixed):
    """No wait."""

    def __init__(self) -> None:
        super().__init__(0)


class wait_exponential(_Wait):
    """``multiplier * exp_base**attempts``, kept between ``min`` and ``max``."""

    def __init__(
        self,
        multiplier: int | float = 1.0,
        exp_base: int | float = 2.0,
        max: time_unit_type = 60.0,
        min: time_unit_type = 0.0,
    ) -> None:
        self.multiplier = float(multiplier)
        self.exp_base = float(exp_base)
        self.max = to_seconds(max)
        self.min = to_seconds(min)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        grown = _exponential(self.multiplier, self.exp_base, attempts)
        return max(0.0, self.min, min(grown, self.max))


class wait_incrementing(_Wait):
    """``start``, then ``increment`` more before each further retry, at most ``max``, never
    below zero."""

    def __init__(
        self,
        start: time_unit_type = 0.0,
        increment: time_unit_type = 100.0,
        max: time_unit_type = float("inf"),
    ) -> None:
        self.start = to_seconds(start)
        self.increment = to_seconds(increment)
        self.max = to_seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return max(0.0, min(self.start + self.increment * attempts, self.max))


class wait_random(_Wait):
    """A uniform draw from ``[min, max]``."""

    def __init__(self, min: time_unit_type = 0.0, max: time_unit_type = 1.0) -> None:
        self.min = to_seconds(min)
        self.max = to_seconds(max)

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _rng(seed).uniform(self.min, self.max)


class wait_exponential_jitter(_Wait):
    """``initial * exp_base**attempts`` plus a uniform draw from ``[0, jitter]``, at most
    ``max``."""

    def __init__(
        self, initial: float = 1.0, exp_base: float = 2.0, max: float = 60.0, jitter: float = 1.0
    ) -> None:
        self.initial = initial
        self.exp_base = exp_base
        self.max = max
        self.jitter = jitter

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        base = min(_exponential(self.initial, self.exp_base, attempts), self.max)
        return min(base + _rng(seed).uniform(0, self.jitter), self.max)


class wait_random_exponential(wait_exponential):
    """Full jitter: a uniform draw between ``min`` and what :class:`wait_exponential` with the
    same arguments would wait."""

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return _rng(seed).uniform(self.min, super().__call__(attempts))


def wait_full_jitter(
    multiplier: int | float = 1.0,
    exp_base: int | float = 2.0,
    max: time_unit_type = 60.0,
    min: time_unit_type = 0.0,
) -> wait_random_exponential:
    """Another name for :class:`wait_random_exponential`."""
    return wait_random_exponential(multiplier=multiplier, exp_base=exp_base, max=max, min=min)


class wait_chain(_Wait):
    """The first strategy before the first retry, the second before the second, ...; the last
    one for every retry after that."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        if not strategies:
            raise ValueError("wait_chain needs at least one strategy")
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        strategy = self.strategies[min(attempts, len(self.strategies) - 1)]
        return strategy(attempts, seed=seed)


class wait_combine(_Wait):
    """The sum of the strategies' waits (what ``a + b`` builds); each gets the same seed."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        self.strategies = strategies

    def __call__(self, attempts: int, *, seed: int | None = None) -> float:
        return sum(strategy(attempts, seed=seed) for strategy in self.strategies)
