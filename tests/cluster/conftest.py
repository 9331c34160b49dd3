"""Fixtures: a Redis Cluster of six real nodes, shared by the session or built for one test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import LocalRedisCluster


def _built(workdir: Path) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(workdir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """The session's cluster: tests may write keys under a unique name, never kill nodes."""
    yield from _built(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def disposable_cluster(tmp_path: Path) -> Iterator[LocalRedisCluster]:
    """A cluster of the test's own, for tests that kill or stop nodes."""
    yield from _built(tmp_path / "cluster")
