"""`invoke rebuild --target local` end to end on a real sandbox swarm (3 managers, 2 workers):
the first run bakes a local image with the real Packer and rolls every node onto it under
load, the second finds nothing changed, and an unhealthy swarm is refused before anything.

The cluster starts from the sandbox's stock images (no local bake yet), so every node
is out of date for the first rebuild. The tests run in file order on one cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from swarmforge.rebuild import EXIT_NOTHING_TO_DO, EXIT_REBUILT
from tests.conftest import INVOKE, REPO, invoke, unique_cluster
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


def test_a_roll_killed_half_way_is_finished_by_the_next_rebuild(swarm: Cluster) -> None:
    before = ids(swarm)
    journal = swarm.state / swarm.name / "journal.json"
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state)}
    rolling = subprocess.Popen([*INVOKE, "roll", "--all", "--yes", "--cluster", swarm.name],
                               cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not _drained(journal):
            assert time.monotonic() < deadline and rolling.poll() is None
            time.sleep(0.1)
    finally:
        os.killpg(rolling.pid, signal.SIGKILL)  # a CI runner lost half-way through the roll
        rolling.wait()
    refused = swarm.run("apply")
    assert refused.returncode == 4 and "unfinished roll" in refused.stderr

    resumed = swarm.run("rebuild", timeout=2400)

    assert resumed.returncode == EXIT_REBUILT, resumed.stderr
    done = report(swarm)
    assert done["result"] == "rolled" and done["baked"] == {} and done["rolled"] == []
    assert done["resumed"]["operation"] == "roll" and done["resumed"]["finished"] is True
    assert sorted(done["resumed"]["replaced"]) == sorted(before)  # --all: every node, once
    assert not journal.exists()
    assert not set(before.values()) & set(ids(swarm).values())
    assert_healthy(swarm)
    assert "resumed" in resumed.stdout and "the unfinished roll" in resumed.stdout


def _drained(journal: Path) -> bool:
    """Whether the roll in ``journal`` has drained the first node it replaces."""
    try:
        current = json.loads(journal.read_text()).get("current")
    except (FileNotFoundError, ValueError):  # not yet written, or being replaced
        return False
    return bool(current and "drain" in current["done"])


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
