"""`invoke rebuild --target local` end to end on a real sandbox swarm (3 managers, 2 workers):
the first run bakes a local image with the real Packer and rolls every node onto it under
load, the second finds nothing changed, and an unhealthy swarm is refused before anything.

The cluster starts from the sandbox's stock images (no local bake yet), so every node
is out of date for the first rebuild. The tests run in file order on one cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from swarmforge.rebuild import EXIT_NOTHING_TO_DO, EXIT_REBUILT
from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import (
    SERVICE_REPLICAS,
    Cluster,
    SwarmWatcher,
    assert_healthy,
    ids,
    start_web,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("rb"), tmp_path_factory.mktemp("rebuild-state"))
    try:
        created = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
        assert created.returncode == 0, created.stderr
        start_web(cluster)
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=cluster.state,
               timeout=600)


def report(cluster: Cluster) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(
        (cluster.state / "_build" / cluster.name / "rebuild-report.json").read_text())
    return found


def recorded(cluster: Cluster) -> str:
    record = json.loads((cluster.state / "_build" / cluster.name / "image.json").read_text())
    return str(record["image"])


def test_the_first_rebuild_bakes_and_rolls_every_node(swarm: Cluster) -> None:
    before = ids(swarm)
    assert {n["image"] for n in swarm.status()["nodes"]} == {None}  # the stock images

    with SwarmWatcher(swarm) as watcher:
        rebuilt = swarm.run("rebuild", timeout=2400)

    assert rebuilt.returncode == EXIT_REBUILT, rebuilt.stderr
    image = recorded(swarm)
    done = report(swarm)
    assert (done["result"], done["reasons"]) == (
        "rebuilt", ["no image recorded for the cluster: a first bake"])
    assert done["baked"] == {"local": image}
    assert sorted(done["rolled"]) == sorted(before)  # every node, each replaced once
    data = assert_healthy(swarm)
    assert {n["image"] for n in data["nodes"]} == {image}
    assert not set(before.values()) & set(ids(swarm).values())
    watcher.assert_quorum_held()
    watcher.assert_replicas_held(tasks_moved=SERVICE_REPLICAS // 2)
    assert f"rebuild of cluster '{swarm.name}' on local: rebuilt" in rebuilt.stdout


def test_the_second_rebuild_finds_nothing_to_do(swarm: Cluster) -> None:
    before = ids(swarm)

    again = swarm.run("rebuild", timeout=600)

    assert again.returncode == EXIT_NOTHING_TO_DO, again.stderr
    done = report(swarm)
    assert done["result"] == "nothing-to-do"
    # A local image builds on no base and does not age: the sandbox's Docker and the inputs.
    assert {c["name"]: c["changed"] for c in done["checks"]} == {"docker": False, "inputs": False}
    assert done["baked"] == {} and done["rolled"] == [] and done["pruned"] == []
    assert ids(swarm) == before
    assert "builder" not in again.stderr  # no builder host came up


def test_an_unhealthy_swarm_is_refused_before_anything(swarm: Cluster) -> None:
    image = recorded(swarm)
    worker = f"{swarm.name}-worker-0"
    swarm.kill_dockerd("w0")
    swarm.wait_status(worker, {"down"})

    refused = swarm.run("rebuild", "--force", timeout=600)

    assert refused.returncode == 1
    assert "refusing to rebuild: the swarm is not healthy" in refused.stderr
    done = report(swarm)
    assert (done["result"], done["baked"], done["rolled"]) == ("failed", {}, [])
    assert "not healthy" in done["error"]
    assert recorded(swarm) == image
