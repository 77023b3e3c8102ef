"""invoke heal on a real sandbox swarm (1 manager + 3 workers): hosts killed by SIGKILL (their
dockerd and sshd, by PID, as tests/chaos.py kills), then healed, or refused by the brake.

The tests run in file order on one cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos import journal_says
from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX, Cluster, assert_healthy, ids

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("hl"), state_root)
    try:
        result = cluster.run("apply", "--managers", "1", "--workers", "3", timeout=900)
        assert result.returncode == 0, result.stderr
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def kill_host(cluster: Cluster, index: int) -> str:
    """SIGKILL worker ``index``'s dockerd and sshd: its host is gone, as far as anyone can
    tell; returns its hostname once the swarm calls it Down."""
    for daemon in ("docker.pid", "sshd.pid"):
        pid = int((SANDBOX / cluster.name / f"w{index}" / daemon).read_text())
        os.kill(pid, signal.SIGKILL)
    hostname = f"{cluster.name}-worker-{index}"
    cluster.wait_status(hostname, {"down"})
    return hostname


def killed_after_the_drain(cluster: Cluster) -> None:
    """`invoke heal --yes`, SIGKILLed (with its Terraform) once its journal has the drain done."""
    env = {**os.environ, **cluster.env, "INVOKE_SWARMFORGE_STATE_DIR": str(cluster.state)}
    heal = subprocess.Popen([*INVOKE, "heal", "--cluster", cluster.name, "--yes"], cwd=REPO,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not journal_says(cluster, lambda j: "drain" in j["replacement"]["done"]):
            assert time.monotonic() < deadline and heal.poll() is None, "never drained"
            time.sleep(0.05)
    finally:
        os.killpg(heal.pid, signal.SIGKILL)
        heal.wait()


def statuses(cluster: Cluster) -> list[str]:
    return sorted(n["status"] for n in cluster.status()["nodes"])


def test_a_healthy_swarm_has_nothing_to_heal(swarm: Cluster) -> None:
    result = swarm.run("heal", "--yes")
    assert result.returncode == 0, result.stderr
    assert "nothing to heal: every node is healthy" in result.stdout


def test_a_dead_workers_host_is_replaced_and_no_down_entry_is_left_even_if_killed_half_way(
        swarm: Cluster) -> None:
    dead = kill_host(swarm, 0)
    before = ids(swarm)

    preview = swarm.run("heal")
    assert preview.returncode == 0, preview.stderr
    assert f"replace worker {dead} is down" in preview.stdout
    assert "preview only: nothing changed" in preview.stdout
    assert ids(swarm) == before

    killed_after_the_drain(swarm)
    result = swarm.run("heal", "--yes")  # as the journal says: it carries on
    assert result.returncode == 0, result.stderr
    assert f"1. finish replacing {dead} (an interrupted heal)" in result.stdout
    assert f"healed: replaced {dead}; the swarm is healthy; join tokens rotated" in result.stdout
    assert swarm.node(dead)["id"] != before[dead]
    assert statuses(swarm) == ["ready"] * 4  # the old entry is gone, not left Down
    assert_healthy(swarm, managers=1, workers=3)
    assert not (swarm.state / swarm.name / "journal.json").exists()


def test_two_of_three_workers_dead_is_refused_as_a_likely_partition(swarm: Cluster) -> None:
    first, second = kill_host(swarm, 1), kill_host(swarm, 2)
    before = ids(swarm)

    refused = swarm.run("heal", "--max-unhealthy-workers", "1", "--yes")
    assert refused.returncode == 5, refused.stderr
    assert (f"refusing to heal: 2 of 3 workers unhealthy (worker {first} is down, worker "
            f"{second} is down), more than max_unhealthy_workers 1") in refused.stderr
    assert "network partition" in refused.stderr
    assert "--max-unhealthy-workers 2 --yes" in refused.stderr
    assert ids(swarm) == before
    assert not (swarm.state / swarm.name / "journal.json").exists()

    # The operator looked: they are gone. Raised for one run, both go in one batch.
    healed = swarm.run("heal", "--max-unhealthy-workers", "2", "--yes")
    assert healed.returncode == 0, healed.stderr
    assert f"healed: replaced {first}, {second}" in healed.stdout
    assert {ids(swarm)[first], ids(swarm)[second]}.isdisjoint(before.values())
    assert statuses(swarm) == ["ready"] * 4
    assert_healthy(swarm, managers=1, workers=3)


def test_a_stale_down_entry_is_removed(swarm: Cluster) -> None:
    """A Down entry no node of Terraform's owns (a host that left the swarm without a
    `node rm`): heal removes it and replaces nothing."""
    leader = swarm.leader()["address"]
    worker = f"{swarm.name}-worker-0"
    address = swarm.node(worker)["address"]
    swarm.ssh(address, "docker swarm leave")
    deadline = time.monotonic() + 60
    while swarm.node(worker)["status"] != "down":
        assert time.monotonic() < deadline, "the entry never went down"
        time.sleep(1)
    # It joins again: a fresh entry at its address; the old one stays Down for good.
    token = swarm.ssh(leader, "docker swarm join-token -q worker").stdout.strip()
    request = json.dumps({"ListenAddr": "0.0.0.0:2377", "AdvertiseAddr": f"{address}:2377",
                          "RemoteAddrs": [f"{leader}:2377"], "JoinToken": token})
    joined = swarm.ssh(address, "curl -sf --unix-socket ${DOCKER_HOST#unix://} -X POST -H "
                                "'Content-Type: application/json' --data-binary @- "
                                "http://docker/swarm/join", stdin=request, check=False)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    result = swarm.run("heal", "--yes")
    assert result.returncode == 0, result.stderr
    assert "removed the stale entries of" in result.stdout
    assert statuses(swarm) == ["ready"] * 4
    assert_healthy(swarm, managers=1, workers=3)


def test_apply_names_heal_for_a_dead_host_and_with_heal_replaces_it_first(
        swarm: Cluster) -> None:
    dead = kill_host(swarm, 1)
    before = ids(swarm)[dead]
    stopped = swarm.run("apply", "--managers", "1", "--workers", "3",
                        env={"INVOKE_SWARMFORGE_DEAD_AFTER": "3"})
    assert stopped.returncode != 0
    assert f"worker {dead} is down: waiting cannot make the swarm healthy" in stopped.stderr
    assert f"`invoke heal --cluster {swarm.name} --target local --yes` replaces" in stopped.stderr
    assert ids(swarm)[dead] == before

    result = swarm.run("apply", "--managers", "1", "--workers", "3", "--heal")
    assert result.returncode == 0, result.stderr
    assert f"replace worker {dead} is down" in result.stderr  # heal's plan, said first
    assert "cluster" in result.stdout and "healthy" in result.stdout
    assert swarm.node(dead)["id"] != before
    assert statuses(swarm) == ["ready"] * 4


def test_a_swarm_no_manager_answers_for_is_refused_as_the_brakes_case(swarm: Cluster) -> None:
    """The last test: the only manager's Docker killed, the swarm has no quorum anywhere."""
    swarm.kill_dockerd("m0")
    result = swarm.run("heal", "--yes")
    assert result.returncode == 5, result.stderr
    assert "refusing to heal: no manager answers for the swarm" in result.stderr
    assert "a network partition" in result.stderr and "`invoke restore`" in result.stderr
