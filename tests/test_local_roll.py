"""Nodes from local images, end to end on a real sandbox swarm: bake -> apply 3+2 ->
a provisioning setting changes -> bake -> roll onto the new image -> prune the old one.

A service runs throughout, and the roll happens under a watcher that polls the
swarm from outside (tests/sandbox_swarm.py). The tests run in file order on one
cluster with a state dir of its own.
"""

from __future__ import annotations

import json
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

#: The provisioning setting that changes between the two bakes: rotated log files kept.
FEWER_LOG_FILES = {"INVOKE_SWARMFORGE_DOCKER_LOG_MAX_FILE": "3"}


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("img"), tmp_path_factory.mktemp("img-roll-state"))
    try:
        baked = cluster.run("bake", "--target", "local", timeout=300)
        assert baked.returncode == 0, baked.stderr
        created = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
        assert created.returncode == 0, created.stderr
        start_web(cluster)
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=cluster.state)


def recorded(cluster: Cluster) -> str:
    record = json.loads((cluster.state / "_build" / cluster.name / "image.json").read_text())
    return str(record["image"])


def images(cluster: Cluster) -> dict[str, str]:
    return {n["hostname"]: n["image"] for n in cluster.status()["nodes"]}


def stored(cluster: Cluster) -> list[str]:
    return sorted(p.name for p in (cluster.state / "_images").iterdir())


def log_config(cluster: Cluster, address: str) -> dict:
    """The log settings a container made on that node gets from its daemon."""
    made = cluster.ssh(address, "docker create -q swarmforge/sample:1 true").stdout.strip()
    try:
        said = cluster.ssh(address, f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' "
                                    f"{made}").stdout
    finally:
        cluster.ssh(address, f"docker rm {made}")
    config: dict = json.loads(said)["Config"]
    return config


def test_every_node_boots_from_the_recorded_image(swarm: Cluster) -> None:
    first = recorded(swarm)
    data = assert_healthy(swarm)

    assert {n["image"] for n in data["nodes"]} == {first}
    assert len(data["nodes"]) == 5
    assert log_config(swarm, data["nodes"][0]["address"]) == {"max-file": "5", "max-size": "10m"}


def test_a_new_image_is_not_what_apply_replaces_nodes_for(swarm: Cluster) -> None:
    first = recorded(swarm)
    before = ids(swarm)

    baked = swarm.run("bake", "--target", "local", env=FEWER_LOG_FILES, timeout=300)
    assert baked.returncode == 0, baked.stderr
    second = recorded(swarm)
    assert second != first
    assert 'daemon log-opts.max-file: "5" -> "3"' in baked.stdout

    again = swarm.run("apply")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout
    assert ids(swarm) == before
    assert set(images(swarm).values()) == {first}


def test_prune_keeps_the_image_the_nodes_run(swarm: Cluster) -> None:
    old, current = set(images(swarm).values()).pop(), recorded(swarm)

    pruned = swarm.run("prune-amis", "--target", "local", "--keep", "1", "--yes")

    assert pruned.returncode == 0, pruned.stderr
    assert f"{old} " in pruned.stdout and "keep (in use)" in pruned.stdout
    assert "nothing to prune" in pruned.stdout
    assert stored(swarm) == sorted([old, current])


def test_roll_moves_every_node_onto_the_new_image(swarm: Cluster) -> None:
    new = recorded(swarm)
    before = ids(swarm)

    with SwarmWatcher(swarm) as watcher:
        rolled = swarm.run("roll", "--target", "local", "--yes", timeout=1500)

    assert rolled.returncode == 0, rolled.stderr
    assert "replaced 5 node(s); the swarm is healthy" in rolled.stdout
    # The swarm was healthy after each node: roll waits for that before the next.
    settled = [line for line in rolled.stderr.splitlines()
               if line.startswith("==> [") and "the swarm is healthy" in line]
    assert len(settled) == 5, rolled.stderr
    data = assert_healthy(swarm)
    assert {n["image"] for n in data["nodes"]} == {new}
    assert not set(before.values()) & {n["id"] for n in data["nodes"]}
    watcher.assert_quorum_held()
    # A drained node's tasks restart elsewhere side by side; at most half of them
    # ever sat on one node here, and the service ends whole.
    watcher.assert_replicas_held(tasks_moved=SERVICE_REPLICAS // 2)
    for node in data["nodes"]:
        assert log_config(swarm, node["address"]) == {"max-file": "3", "max-size": "10m"}
    # Hosts remember their image where they run.
    markers = {p.read_text().strip() for p in (SANDBOX / swarm.name).glob("*/image")}
    assert {Path(m).name for m in markers} == {new}

    again = swarm.run("roll", "--target", "local", "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing to roll" in again.stdout


def test_prune_removes_the_old_image_once_no_node_runs_it(swarm: Cluster) -> None:
    current = recorded(swarm)
    (old,) = set(stored(swarm)) - {current}

    preview = swarm.run("prune-amis", "--target", "local", "--keep", "1")
    assert preview.returncode == 0, preview.stderr
    assert "preview: 1 image(s) would be removed" in preview.stdout
    assert old in stored(swarm)

    pruned = swarm.run("prune-amis", "--target", "local", "--keep", "1", "--yes")
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {old}" in pruned.stdout
    assert stored(swarm) == [current]
    listed = swarm.run("amis", "--target", "local")
    assert old not in listed.stdout and current in listed.stdout
