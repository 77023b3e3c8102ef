"""Scale-in on a real sandbox swarm (3 managers + 2 workers -> 1 + 1): refused without a
confirmation; with --yes the nodes that go leave the swarm first (drain, demote, leave,
node rm), one manager at a time, while a watcher sees a majority of managers answer and
the service keep its replicas; no Down entry is left. The tests run in file order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import (
    SANDBOX,
    SERVICE_REPLICAS,
    Cluster,
    SwarmWatcher,
    assert_healthy,
    ids,
    start_web,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("hls"), state_root)
    try:
        result = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
        assert result.returncode == 0, result.stderr
        start_web(cluster)
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def test_a_scale_in_without_a_confirmation_is_refused(swarm: Cluster) -> None:
    before = ids(swarm)
    result = swarm.run("apply", "--managers", "1", "--workers", "1")  # no terminal, no --yes
    assert result.returncode != 0
    n = swarm.name
    assert ("refusing to scale down from 3 managers + 2 workers to 1 + 1 without a "
            f"confirmation: {n}-worker-1, {n}-manager-1, {n}-manager-2 would leave the swarm"
            ) in result.stderr
    assert "the 2 at the highest indices leave the swarm first" in result.stderr  # the plan
    assert ids(swarm) == before


def test_the_nodes_that_go_leave_the_swarm_first_and_no_down_entry_is_left(
        swarm: Cluster) -> None:
    n = swarm.name
    with SwarmWatcher(swarm) as watcher:
        result = swarm.run("apply", "--managers", "1", "--workers", "1", "--yes")
    assert result.returncode == 0, result.stderr
    for line in (f"scale-in: {n}-worker-1 drain, leave the swarm and are removed",
                 f"scale-in: manager {n}-manager-2 drains, is demoted",
                 f"scale-in: manager {n}-manager-1 drains, is demoted",
                 "scale-in: terraform destroys 3 node(s)"):
        assert line in result.stderr
    data = assert_healthy(swarm, managers=1, workers=1)
    assert sorted(node["hostname"] for node in data["nodes"]) == [f"{n}-manager-0", f"{n}-worker-0"]
    assert {node["status"] for node in data["nodes"]} == {"ready"}  # nothing left Down
    watcher.assert_quorum_held()
    answered = [s for s in watcher.samples if s.answered]
    assert answered[-1].running == SERVICE_REPLICAS
    assert not (SANDBOX / n / "w1").exists() and not (SANDBOX / n / "m2").exists()


def test_a_reapply_at_the_new_counts_changes_nothing(swarm: Cluster) -> None:
    result = swarm.run("apply", "--managers", "1", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
