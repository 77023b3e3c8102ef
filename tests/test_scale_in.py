"""Scale-in on a real sandbox swarm (3 managers + 2 workers -> 1 + 1): refused without a
confirmation; with --yes the nodes that go leave the swarm first (drain, demote, leave,
node rm), one manager at a time, while a watcher sees a majority of managers answer and
the service keep its replicas; no Down entry is left. The tests run in file order.

First, on the same cluster, heal of a dead manager and a dead worker at once (the heal
tests of tests/test_heal.py have one manager): the manager's surge goes first, judged
without the dead worker, then the worker."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import managers_by_index, pick_victim
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


def test_a_dead_manager_and_a_dead_worker_are_healed_the_manager_first(swarm: Cluster) -> None:
    manager, worker = pick_victim(swarm), f"{swarm.name}-worker-1"
    for host_dir in (f"m{manager.rsplit('-', 1)[1]}", "w1"):
        for daemon in ("docker.pid", "sshd.pid"):
            os.kill(int((SANDBOX / swarm.name / host_dir / daemon).read_text()), signal.SIGKILL)
    swarm.wait_status(manager, {"unreachable"})
    swarm.wait_status(worker, {"down"})
    with SwarmWatcher(swarm) as watcher:
        result = swarm.run("heal", "--yes")
    assert result.returncode == 0, result.stderr
    watcher.assert_quorum_held(least=5)  # dead nodes: nothing to drain, no backup, quick
    watcher.assert_managers_never_above(3)
    plan = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert plan[0].startswith(f"1. replace manager {manager} is ")  # down, or unreachable
    assert plan[0].endswith("(its entry goes first, then its twin joins)")
    assert plan[1:] == [f"2. replace worker {worker} is down: drain, remove the entries, fresh "
                        "hosts join"]
    data = assert_healthy(swarm, managers=3, workers=2)
    assert manager not in [n["hostname"] for n in data["nodes"]]
    assert {n["status"] for n in data["nodes"]} == {"ready"}


def test_a_scale_in_without_a_confirmation_is_refused(swarm: Cluster) -> None:
    before = ids(swarm)
    result = swarm.run("apply", "--managers", "1", "--workers", "1")  # no terminal, no --yes
    assert result.returncode != 0
    first, second = managers_by_index(swarm)[1:]
    assert ("refusing to scale down from 3 managers + 2 workers to 1 + 1 without a "
            f"confirmation: {swarm.name}-worker-1, {first}, {second} would leave the swarm"
            ) in result.stderr
    assert "the 2 at the highest indices leave the swarm first" in result.stderr  # the plan
    assert ids(swarm) == before


def test_the_nodes_that_go_leave_the_swarm_first_and_no_down_entry_is_left(
        swarm: Cluster) -> None:
    n = swarm.name
    first, second, third = managers_by_index(swarm)
    with SwarmWatcher(swarm) as watcher:
        result = swarm.run("apply", "--managers", "1", "--workers", "1", "--yes")
    assert result.returncode == 0, result.stderr
    steps = [f"scale-in: {n}-worker-1 drain, leave the swarm and are removed",
             f"scale-in: manager {third} drains, is demoted",  # the highest index first
             f"scale-in: manager {second} drains, is demoted",
             "scale-in: terraform destroys 3 node(s)"]
    said = [next(i for i, line in enumerate(result.stderr.splitlines()) if step in line)
            for step in steps]
    assert said == sorted(said)
    data = assert_healthy(swarm, managers=1, workers=1)
    assert sorted(node["hostname"] for node in data["nodes"]) == [first, f"{n}-worker-0"]
    assert {node["status"] for node in data["nodes"]} == {"ready"}  # nothing left Down
    watcher.assert_quorum_held()
    answered = [s for s in watcher.samples if s.answered]
    assert answered[-1].running == SERVICE_REPLICAS
    slots = [name.rsplit("-", 1)[1] for name in (second, third)]
    assert not [p for p in ("w1", *(f"m{s}" for s in slots)) if (SANDBOX / n / p).exists()]


def test_a_reapply_at_the_new_counts_changes_nothing(swarm: Cluster) -> None:
    result = swarm.run("apply", "--managers", "1", "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
