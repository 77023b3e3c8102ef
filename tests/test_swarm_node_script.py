"""scripts/swarm-node.sh's overlay pool (issue 16, point 10), on a real sandbox host.

terraform/aws hands the first manager's ``swarm-node.sh init`` the pool that
swarmforge chose outside the VPC; the sandbox runs the same script without one.
Here a one-manager sandbox swarm is made the usual way, the manager leaves it,
and the script makes a new swarm with a pool: Docker then takes overlay subnets
from it, and a second init changes nothing (a swarm keeps its pool).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX, Cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

POOL = "10.77.0.0/16"


@pytest.fixture(scope="module")
def manager(state_root: Path) -> Iterator[tuple[Cluster, str]]:
    cluster = Cluster(unique_cluster("pool"), state_root)
    result = cluster.run("apply", "--managers", "1", "--workers", "0", timeout=900)
    assert result.returncode == 0, result.stderr
    address = cluster.leader()["address"]
    yield cluster, address
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def swarm_pool(cluster: Cluster, host: str) -> tuple[list[str] | None, int]:
    shown = cluster.ssh(host, "docker info --format '{{json .Swarm.Cluster}}'").stdout
    found = json.loads(shown)
    return found["DefaultAddrPool"], found["SubnetSize"]


def test_init_with_a_pool_gives_overlays_subnets_of_it(manager: tuple[Cluster, str]) -> None:
    cluster, address = manager
    script = SANDBOX / cluster.name / "m0" / "provision" / "swarm-node.sh"
    # The sandbox passes no pool: Docker's default (null in `docker info`: 10.0.0.0/8).
    assert swarm_pool(cluster, address)[0] in (None, ["10.0.0.0/8"])

    cluster.ssh(address, "docker swarm leave --force")
    made = cluster.ssh(address, f"bash {script} init {address} {POOL}")
    again = cluster.ssh(address, f"bash {script} init {address} 10.88.0.0/16 20")
    network = cluster.ssh(address, "docker network create -d overlay pooltest && docker network "
                                   "inspect pooltest --format '{{(index .IPAM.Config 0).Subnet}}'")

    assert f"overlay networks from {POOL}" in made.stdout
    assert "already in a swarm: nothing to do" in again.stdout
    assert swarm_pool(cluster, address) == ([POOL], 24)
    assert network.stdout.strip().splitlines()[-1].startswith("10.77.")


@pytest.mark.parametrize(("arguments", "complaint"), [
    ("10.0.0.5 'x;reboot'", "POOL must be an IPv4 CIDR"),
    ("10.0.0.5 10.77.0.0/16 8", "MASK_LENGTH 8 must lie from 16 to 29"),
    ("10.0.0.5 10.77.0.0/16 x", "MASK_LENGTH must be a prefix length"),
])
def test_a_bad_pool_is_refused_before_docker_is_asked(manager: tuple[Cluster, str],
                                                      arguments: str, complaint: str) -> None:
    cluster, address = manager
    script = SANDBOX / cluster.name / "m0" / "provision" / "swarm-node.sh"

    refused = cluster.ssh(address, f"bash {script} init {arguments}", check=False)

    assert refused.returncode == 1
    assert complaint in refused.stderr
