"""Manager commands asked again, on a real sandbox swarm (1 manager + 1 worker).

While the managers elect a leader, a manager may answer "node lost leader status" for a
change it did make: `Swarm` asks again (issue 17, point 13: a leader change is "not yet",
not "cannot happen"). Asking again must then be safe: a demote of a node that is already
a worker, and a removal of a node already gone, are no error; and a refusal that is not an
election (the last manager) fails at once, without waiting out the election's bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmforge.errors import CommandError
from swarmforge.ssh import SSH, SshProfile
from swarmforge.swarm import NODE_GONE, RAFT_IN_FLUX, RAFT_SETTLE, Node, Swarm
from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import Cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def cluster(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("mc"), state_root)
    result = cluster.run("apply", "--managers", "1", "--workers", "1", timeout=900)
    assert result.returncode == 0, result.stderr
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


@pytest.fixture(scope="module")
def swarm(cluster: Cluster) -> Swarm:
    ssh_dir = cluster.ssh_config.parent
    profile = SshProfile(name=cluster.name, user="unused", identity=ssh_dir / "unused",
                         known_hosts=ssh_dir / "unused", config=cluster.ssh_config)
    return Swarm(SSH(profile), [manager_address(cluster)])


def manager_address(cluster: Cluster) -> str:
    return next(n["address"] for n in cluster.status()["nodes"] if n["role"] == "manager")


def node(swarm: Swarm, role: str) -> Node:
    return next(n for n in swarm.nodes() if n.role == role)


def test_a_demote_asked_again_is_no_error(swarm: Swarm) -> None:
    worker = node(swarm, "worker")
    swarm.demote(worker, swarm.manager_hosts[0])  # as a retry finds it: already a worker
    assert node(swarm, "worker").id == worker.id


def test_a_refusal_that_is_no_election_fails_at_once(swarm: Swarm) -> None:
    manager = node(swarm, "manager")
    started = time.monotonic()
    with pytest.raises(CommandError, match="last manager"):
        swarm.demote(manager, swarm.manager_hosts[0])
    assert time.monotonic() - started < RAFT_SETTLE / 4
    assert node(swarm, "manager").id == manager.id


def test_a_removal_asked_again_finds_the_node_gone(cluster: Cluster, swarm: Swarm) -> None:
    worker = node(swarm, "worker")
    cluster.ssh(worker.address, "docker swarm leave")
    swarm.remove(worker, swarm.manager_hosts[0])
    assert [n.role for n in swarm.nodes()] == ["manager"]
    swarm.remove(worker, swarm.manager_hosts[0])  # its answer lost: asked again
    assert [n.role for n in swarm.nodes()] == ["manager"]


def test_a_node_removed_under_the_listing_is_read_again(cluster: Cluster, swarm: Swarm) -> None:
    """What Docker says when `node inspect` meets a node removed since `node ls` listed it
    (a spot reaper's or a departure's node rm between the two): `nodes()` reads again on
    exactly that, and on nothing else."""
    manager = node(swarm, "manager")
    workers = cluster.ssh(manager.address, "docker node ls -q --filter role=worker").stdout.split()
    assert not workers  # the test before removed the worker
    removed = "mx9hpnmarh53cinuzhb39fdcv"  # a node ID this swarm never had
    answer = cluster.ssh(manager.address, f"docker node inspect -f '{{{{.ID}}}}' {manager.id} "
                                          f"{removed}", check=False)

    assert answer.returncode != 0 and manager.id in answer.stdout
    assert NODE_GONE.search(answer.stderr), answer.stderr
    assert not any(NODE_GONE.search(words) for words in RAFT_IN_FLUX)
    assert [n.id for n in swarm.nodes()] == [manager.id]
