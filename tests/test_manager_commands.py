"""Manager commands asked again, on a real sandbox swarm (1 manager + 1 worker).

While the managers elect a leader, a manager may answer "node lost leader status" for a
change it did make: `Swarm` asks again (issue 17, point 13: a leader change is "not yet",
not "cannot happen"). Asking again must then be safe: a demote of a node that is already
a worker, and a removal of a node already gone, are no error; and a refusal that is not an
election (the last manager) fails at once, without waiting out the election's bound.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmforge.errors import CommandError
from swarmforge.ssh import SSH, SshProfile
from swarmforge.swarm import NODE_QUERY, RAFT_SETTLE, Node, Swarm
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


def test_the_listing_reads_the_nodes_as_the_docker_cli_shows_them(
        cluster: Cluster, swarm: Swarm) -> None:
    """NODE_QUERY asks Docker's API, not its CLI: it must read what `docker node ls` and
    `docker node inspect` show, in the same order, and a node that cannot list must refuse
    in the CLI's own words (what in_election and an operator read)."""
    manager = manager_address(cluster)
    shown = [json.loads(line) for line in
             cluster.ssh(manager, "docker node ls --format '{{json .}}'").stdout.splitlines()]
    addresses = cluster.ssh(manager, "docker node inspect --format '{{.Status.Addr}}' "
                                     "$(docker node ls -q)").stdout.split()
    listed = swarm.nodes()

    assert [(n.id, n.hostname, n.status, n.availability, n.manager_status or "",
             n.engine_version) for n in listed] == [
        (row["ID"], row["Hostname"], row["Status"].lower(), row["Availability"].lower(),
         row["ManagerStatus"].lower(), row["EngineVersion"]) for row in shown]
    assert sorted(n.address for n in listed) == sorted(addresses)
    worker = node(swarm, "worker").address
    by_api = cluster.ssh(worker, NODE_QUERY, check=False)
    by_cli = cluster.ssh(worker, "docker node ls", check=False)
    assert "not a swarm manager" in by_cli.stderr
    assert (by_api.returncode, by_api.stdout, by_api.stderr) == (1, "", by_cli.stderr)


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
