"""The short chaos suite on a Redis Cluster state store with RabbitMQ as the broker: worker
kills and SIGTERMs, a master killed -9 (its replica promoted, it rejoins), a master frozen past
the node timeout (promoted away from it), poison messages and a RabbitMQ kill -9 and restart,
and nothing is lost, doubled or left behind (``tests.cluster.chaos_on_cluster``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.record import ChaosConfig
from tests.cluster.chaos_on_cluster import run_chaos_on_cluster


@pytest.mark.integration
@pytest.mark.long
@pytest.mark.timeout(420)
def test_runs_survive_master_kills_and_freezes_worker_kills_and_poison_on_a_redis_cluster(
    tmp_path: Path,
) -> None:
    # the RabbitMQ setting's size (48 runs, every fault kind once); the cluster's failovers and
    # re-syncs take the rest; `bash scripts/chaos.sh --short --state cluster` runs 80
    cfg = ChaosConfig.short(workdir=tmp_path, broker="rabbitmq", runs=48)
    run_chaos_on_cluster(cfg).assert_clean(cfg)
