"""replace-node, roll and token rotation on a real sandbox swarm (3 managers + 2 workers).

A service runs on the swarm throughout, and a watcher polls the swarm from the
outside during every operation: the service's replica counts, and whether a
majority of the managers answers. The tests run in file order on one cluster.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import kill_manager, pick_victim
from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.leaks import ArgvWatcher
from tests.sandbox_swarm import (
    SANDBOX,
    SERVICE_REPLICAS,
    Cluster,
    SwarmWatcher,
    assert_healthy,
    ids,
    start_web,
    tasks_on,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("rp"), state_root)
    result = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
    assert result.returncode == 0, result.stderr
    start_web(cluster)
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


# -- refusals: each with a clear message and nothing changed ---------------------


def test_an_unknown_node_is_refused(swarm: Cluster) -> None:
    before = ids(swarm)
    result = swarm.run("replace-node", "no-such-node", "--yes")
    assert result.returncode == 2
    assert "node 'no-such-node' is not in this cluster; its nodes are:" in result.stderr
    assert ids(swarm) == before


def test_the_preview_changes_nothing(swarm: Cluster) -> None:
    before = ids(swarm)
    result = swarm.run("replace-node", f"{swarm.name}-worker-0")
    assert result.returncode == 0, result.stderr
    assert "drain" in result.stdout and "preview only: nothing changed" in result.stdout
    assert not (swarm.state / swarm.name / "journal.json").exists()
    assert ids(swarm) == before


def test_a_roll_wider_than_the_workers_is_refused(swarm: Cluster) -> None:
    """--max-unavailable is checked against the workers the cluster has, not a setting."""
    before = ids(swarm)
    result = swarm.run("roll", "--max-unavailable", "3", "--yes")
    errors = [line for line in result.stderr.splitlines() if line.startswith("swarmforge:")]
    assert (result.returncode, errors) == (2, [
        "swarmforge: --max-unavailable: 3 must be from 1 to 2 (the cluster has 2 worker(s))"])
    assert "Traceback" not in result.stderr
    assert not (swarm.state / swarm.name / "journal.json").exists()
    assert ids(swarm) == before


# -- replacements -----------------------------------------------------------------


def test_a_worker_is_replaced_and_the_service_keeps_its_replicas(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-1"
    old_id, moved = swarm.node(worker)["id"], tasks_on(swarm, worker)
    with SwarmWatcher(swarm) as watcher, ArgvWatcher() as argv:
        result = swarm.run("replace-node", worker, "--yes")
    assert result.returncode == 0, result.stderr
    assert "replaced; the swarm is healthy; join tokens rotated" in result.stdout
    assert swarm.node(worker)["id"] != old_id
    assert_healthy(swarm)
    watcher.assert_replicas_held(moved)
    watcher.assert_quorum_held()
    assert argv.seen == []


def test_a_follower_then_the_leader_are_replaced_without_losing_quorum(swarm: Cluster) -> None:
    for _ in ("follower", "leader"):
        nodes = swarm.status()["nodes"]
        leader = next(n for n in nodes if n["manager_status"] == "leader")
        follower = next(n for n in nodes if n["manager_status"] == "reachable")
        target = follower if _ == "follower" else leader
        tasks = {n["hostname"]: tasks_on(swarm, n["hostname"]) for n in nodes
                 if n["manager_status"] in ("leader", "reachable")}
        with SwarmWatcher(swarm) as watcher:
            result = swarm.run("replace-node", target["hostname"], "--yes")
        assert result.returncode == 0, result.stderr
        # The backup taken first drains its manager too (before its Docker stops): the
        # service may dip by that manager's tasks, once; and the tasks it moved may land
        # on the target, whose drain then moves its own and those at once.
        source = re.search(r"backing up the swarm from (\S+)", result.stderr)
        assert source and source[1] != target["hostname"], result.stderr
        moved = tasks[target["hostname"]] + tasks[source[1]]
        data = assert_healthy(swarm)
        assert target["id"] not in [n["id"] for n in data["nodes"]]
        assert sum(n["manager_status"] == "leader" for n in data["nodes"]) == 1
        watcher.assert_quorum_held()
        watcher.assert_replicas_held(moved)
    # A re-apply finds nothing to change: the new managers took the old ones' places.
    result = swarm.run("apply")
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout


def test_a_dead_worker_is_replaced(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-0"
    swarm.kill_dockerd("w0")
    swarm.wait_status(worker, {"down"})
    result = swarm.run("replace-node", worker, "--yes")
    assert result.returncode == 0, result.stderr
    assert swarm.node(worker)["status"] == "ready"
    assert_healthy(swarm)


def test_a_manager_is_not_replaced_while_another_is_down_but_the_dead_one_is(
        swarm: Cluster) -> None:
    nodes = swarm.status()["nodes"]
    followers = [n for n in nodes if n["manager_status"] == "reachable"]
    dead, other = followers[0], followers[1]
    slot = int(dead["hostname"].rsplit("-", 1)[1])
    swarm.kill_dockerd(f"m{slot}")
    swarm.wait_status(dead["hostname"], {"unreachable"})
    before = ids(swarm)

    refused = swarm.run("replace-node", other["hostname"], "--yes")
    assert refused.returncode != 0
    assert "only 1 other(s) are reachable, not a majority" in refused.stderr
    assert ids(swarm) == before and not (swarm.state / swarm.name / "journal.json").exists()

    with SwarmWatcher(swarm) as watcher:
        result = swarm.run("replace-node", dead["hostname"], "--yes")
    assert result.returncode == 0, result.stderr
    assert dead["id"] not in ids(swarm).values()
    assert_healthy(swarm)
    # A dead manager's replacement is quick (nothing to drain, no backup), and each answer
    # takes a second when the machine is busy: fewer answers than the live ones' watch.
    watcher.assert_quorum_held(least=5)
    watcher.assert_managers_never_above(3)


def test_a_manager_that_died_before_its_surge_goes_first_when_resumed(swarm: Cluster) -> None:
    # Live when its record was made (the surge order), killed before the surge: the
    # resume finds it dead, and its entry goes before its twin joins.
    victim = pick_victim(swarm)
    journal = swarm.state / swarm.name / "journal.json"
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state)}
    first = subprocess.Popen([*INVOKE, "replace-node", victim, "--cluster", swarm.name, "--yes",
                              "--no-backup"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not journal.exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    record = json.loads(journal.read_text())["replacement"]
    assert (record["done"], record["leaves_first"]) == ([], False)
    kill_manager(swarm, victim)
    swarm.wait_status(victim, {"unreachable"})

    with SwarmWatcher(swarm) as watcher:
        resumed = swarm.run("replace-node", victim, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{victim} is dead now: its entry goes before its twin joins" in resumed.stderr
    assert_healthy(swarm)
    watcher.assert_quorum_held(least=5)
    watcher.assert_managers_never_above(3)


def test_a_replacement_killed_after_the_drain_resumes(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-1"
    journal = swarm.state / swarm.name / "journal.json"
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state)}
    first = subprocess.Popen([*INVOKE, "replace-node", worker, "--cluster", swarm.name, "--yes"],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and "drain" in json.loads(journal.read_text())["replacement"]["done"]):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        # The cluster is taken: no other operation may start meanwhile.
        busy = swarm.run("apply")
        assert busy.returncode == 4 and "is busy" in busy.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # Killed after the drain: the node is drained, or already out of the swarm.
    assert [n["availability"] for n in swarm.status()["nodes"]
            if n["hostname"] == worker] in (["drain"], [])

    other = swarm.run("replace-node", f"{swarm.name}-worker-0", "--yes")
    assert other.returncode == 4 and "unfinished replace-node" in other.stderr

    resumed = swarm.run("replace-node", worker, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "(done)" in resumed.stdout
    assert not journal.exists()
    assert swarm.node(worker)["availability"] == "active"
    assert_healthy(swarm)


def test_old_join_tokens_are_rejected_after_a_replacement(swarm: Cluster) -> None:
    leader = swarm.leader()["address"]
    old = swarm.ssh(leader, "docker swarm join-token -q worker").stdout.strip()
    result = swarm.run("replace-node", f"{swarm.name}-worker-0", "--yes")
    assert result.returncode == 0, result.stderr
    leader = swarm.leader()["address"]
    new = swarm.ssh(leader, "docker swarm join-token -q worker").stdout.strip()
    assert new.startswith("SWMTKN-1-") and new != old

    # A fresh host tries to join with the old token: the swarm says no.
    sandbox = str(SANDBOX / swarm.name / "sandbox")
    address = f"{swarm.network_prefix}.250"
    subprocess.run([sandbox, "host-up", f"{swarm.name}-worker-150", address], check=True,
                   capture_output=True)
    try:
        request = json.dumps({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": f"{address}:2377",
                              "RemoteAddrs": [f"{leader}:2377"], "JoinToken": old})
        attempt = swarm.ssh(address, "curl -s --unix-socket ${DOCKER_HOST#unix://} -X POST "
                                     "-H 'Content-Type: application/json' --data-binary @- "
                                     "http://docker/swarm/join", stdin=request, check=False)
        assert "a valid join token is necessary" in attempt.stdout.lower(), attempt.stdout
    finally:
        subprocess.run([sandbox, "host-down", f"{swarm.name}-worker-150"], check=True,
                       capture_output=True)


def test_roll_all_replaces_every_node_and_the_swarm_stays_healthy(swarm: Cluster) -> None:
    before = ids(swarm)
    with SwarmWatcher(swarm) as watcher:
        result = swarm.run("roll", "--all", "--yes", timeout=1200)
    assert result.returncode == 0, result.stderr
    assert "replaced 5 node(s)" in result.stdout
    after = assert_healthy(swarm)
    assert not set(before.values()) & {n["id"] for n in after["nodes"]}
    watcher.assert_quorum_held()
    answered = [s for s in watcher.samples if s.answered]
    assert answered[-1].running == SERVICE_REPLICAS
    # Workers first, the leader last.
    order = [line for line in result.stdout.splitlines() if line[:1].isdigit()]
    assert "worker" in order[0] and "manager" in order[-1]


def test_the_only_manager_is_never_replaced(state_root: Path) -> None:
    lone = Cluster(unique_cluster("rp1"), state_root)
    try:
        created = lone.run("apply", "--managers", "1", "--workers", "0")
        assert created.returncode == 0, created.stderr
        before = ids(lone)
        refused = lone.run("replace-node", f"{lone.name}-manager-0", "--yes")
        assert refused.returncode != 0
        assert "it is the swarm's only manager" in refused.stderr
        assert ids(lone) == before
    finally:
        invoke("destroy", "--cluster", lone.name, "--yes", state_dir=state_root)


def test_roll_without_all_on_local_finds_nothing_out_of_date(swarm: Cluster) -> None:
    result = swarm.run("roll", "--yes")
    assert result.returncode == 0, result.stderr
    assert "nothing to roll" in result.stdout
