"""Backup and restore on one real sandbox swarm (3 managers, 1 worker), in file order:
a backup taken without losing quorum -> refused when it would -> the disaster (2 of 3
managers killed) restored from the survivor -> the whole control plane lost (the backed-up
manager's machine made anew at its address, the others' dockerd killed) and restored from
the newest backup onto that fresh machine.

The kills are SIGKILLs of dockerd by PID, as tests/chaos.py makes them, on this
module's own cluster only.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos import journal_says, kill_manager
from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX, Cluster, SwarmWatcher, assert_healthy, start_web, wait_replicas

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

SHAPE = {"managers": 3, "workers": 1}


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Kills are meant: a dead manager is named dead after 10 s, not the default 60.
    cluster = Cluster(unique_cluster("bk"), tmp_path_factory.mktemp("bk-state"),
                      env={"INVOKE_SWARMFORGE_DEAD_AFTER": "10"})
    try:
        created = cluster.run("apply", "--target", "local", "--managers", "3", "--workers", "1",
                              "--yes", timeout=600)
        assert created.returncode == 0, created.stderr
        start_web(cluster)
        leader = cluster.leader()["address"]
        cluster.ssh(leader, "docker secret create db_password -", stdin="not-a-real-password")
        cluster.ssh(leader, "docker config create app_config -", stdin="colour: blue\n")
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=cluster.state)


def backups(cluster: Cluster) -> list[Path]:
    return sorted((cluster.state / cluster.name / "backups").glob("*.tar"))


def manifest(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        return dict(json.load(member))


def names(cluster: Cluster, kind: str) -> set[str]:
    leader = cluster.leader()["address"]
    return set(cluster.ssh(leader, f"docker {kind} ls --format '{{{{.Name}}}}'").stdout.split())


def interrupted_once(cluster: Cluster, words: list[str],
                     when: Callable[[dict], bool]) -> subprocess.CompletedProcess[str]:
    """Run ``invoke WORDS``, and Ctrl-C it (SIGINT to its group, as a terminal sends it)
    as soon as its journal satisfies ``when``."""
    env = {**os.environ, **cluster.env, "INVOKE_SWARMFORGE_STATE_DIR": str(cluster.state)}
    child = subprocess.Popen([*INVOKE, *words, "--cluster", cluster.name], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        while not journal_says(cluster, when):
            assert child.poll() is None, "the restore ended before the moment to stop it"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        stdout, stderr = child.communicate(timeout=300)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert "SWMTKN-1" not in stdout + stderr
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def cluster_nodes(cluster: Cluster) -> list[dict]:
    return list(cluster.status()["nodes"])


def remake_host(cluster: Cluster, hostname: str, address: str) -> None:
    """A fresh sandbox host in place of ``hostname``'s, at the same address (Docker restores
    a manager's raft only at its own address: docker/docs#7931), knowing no swarm."""
    sandbox = str(SANDBOX / cluster.name / "sandbox")
    subprocess.run([sandbox, "host-down", hostname], check=True, capture_output=True, timeout=120)
    subprocess.run([sandbox, "host-up", hostname, address], check=True, capture_output=True,
                   timeout=300)
    state = cluster.ssh(address, "docker info --format '{{.Swarm.LocalNodeState}}'").stdout
    assert state.strip() == "inactive"


def managers(cluster: Cluster) -> list[dict]:
    return [n for n in cluster_nodes(cluster) if n["role"] == "manager"]


def test_a_backup_is_taken_from_a_follower_without_losing_quorum(swarm: Cluster) -> None:
    before = {n["hostname"]: n for n in managers(swarm)}
    leader = swarm.leader()["hostname"]

    with SwarmWatcher(swarm) as watcher:
        taken = swarm.run("backup")

    assert taken.returncode == 0, taken.stderr
    (archive,) = backups(swarm)
    assert archive.name in taken.stdout
    data = manifest(archive)
    assert data["hostname"] != leader and data["hostname"] in before
    assert data["node_id"] == before[data["hostname"]]["id"]
    assert data["docker_version"] == before[data["hostname"]]["engine_version"]
    assert data["swarm_id"] and data["autolocked"] is False
    assert re.fullmatch(r"[0-9a-f]{64}", data["sha256"])
    # The raft's keys are in it: this user's alone.
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["manifest.json", "swarm.tar.gz"]
    watcher.assert_quorum_held()
    assert_healthy(swarm, **SHAPE)
    assert {n["hostname"]: n["id"] for n in managers(swarm)} == {
        h: n["id"] for h, n in before.items()}


def test_replace_node_takes_a_backup_before_it_touches_a_live_manager(swarm: Cluster) -> None:
    follower = next(n for n in managers(swarm) if n["manager_status"] == "reachable")

    replaced = swarm.run("replace-node", follower["hostname"], "--yes")

    assert replaced.returncode == 0, replaced.stderr
    _, second = backups(swarm)
    assert f"backup {second.name} stored in" in replaced.stderr
    # Not from the manager replaced: a backup goes back only onto the one it came from.
    assert manifest(second)["node_id"] != follower["id"]
    assert manifest(second)["hostname"] in {n["hostname"] for n in managers(swarm)}
    assert replaced.stderr.index(second.name) < replaced.stderr.index("terraform")
    assert_healthy(swarm, **SHAPE)


def test_a_failed_backup_stops_replace_node_before_anything_changed(swarm: Cluster) -> None:
    store = swarm.state / swarm.name / "backups"
    aside = store.with_name("backups.aside")
    store.rename(aside)
    store.write_text("a file where the backups dir should be\n")
    follower = next(n for n in managers(swarm) if n["manager_status"] == "reachable")
    before = {n["hostname"]: n["id"] for n in cluster_nodes(swarm)}
    try:
        stopped = swarm.run("replace-node", follower["hostname"], "--yes")
    finally:
        store.unlink()
        aside.rename(store)

    assert stopped.returncode != 0
    assert (f"no backup could be taken before replacing {follower['hostname']}, and nothing "
            "was changed") in stopped.stderr
    assert "Pass --no-backup to replace it without one" in stopped.stderr
    assert not (swarm.state / swarm.name / "journal.json").exists()
    assert {n["hostname"]: n["id"] for n in cluster_nodes(swarm)} == before
    assert_healthy(swarm, **SHAPE)


def test_a_restore_is_refused_while_the_swarm_has_quorum(swarm: Cluster) -> None:
    refused = swarm.run("restore", "--yes")

    assert refused.returncode != 0
    assert "still has a majority of managers" in refused.stderr
    assert "replace-node" in refused.stderr
    assert not (swarm.state / swarm.name / "journal.json").exists()


def test_a_backup_that_would_break_quorum_is_refused(swarm: Cluster) -> None:
    follower = next(n for n in managers(swarm) if n["manager_status"] == "reachable")
    kill_manager(swarm, follower["hostname"])
    swarm.wait_status(follower["hostname"], {"unreachable", "down"})

    refused = swarm.run("backup")

    assert refused.returncode != 0
    assert "refusing to back up: 2 of 3 managers are reachable" in refused.stderr
    assert follower["hostname"] in refused.stderr and "replace-node" in refused.stderr
    assert len(backups(swarm)) == 2
    statuses = {n["hostname"]: n["manager_status"] for n in managers(swarm)}
    assert sorted(statuses.values()) == ["leader", "reachable", "unreachable"]


def test_a_swarm_that_lost_quorum_is_restored_from_its_survivor(swarm: Cluster) -> None:
    alive = [n for n in managers(swarm) if n["manager_status"] in ("leader", "reachable")]
    victim, survivor = alive[0], alive[1]
    kill_manager(swarm, victim["hostname"])  # 2 of 3 managers gone: no majority

    preview = swarm.run("restore")
    assert preview.returncode == 0, preview.stderr
    assert f"survivor: {survivor['hostname']}, from its own raft state" in preview.stdout
    assert "preview only: nothing changed" in preview.stdout
    assert not (swarm.state / swarm.name / "journal.json").exists()

    # Stopped (Ctrl-C) once the new cluster is forced: run again, it carries on.
    stopped = interrupted_once(swarm, ["restore", "--yes"],
                               lambda journal: "force-new-cluster" in journal.get("done", []))
    assert stopped.returncode == 130, stopped.stderr
    assert "invoke restore" in stopped.stderr
    restored = swarm.run("restore", "--yes")

    assert restored.returncode == 0, restored.stderr
    assert "then rotate the join tokens (done)" in restored.stdout
    assert re.search(r"RTO \d+s", restored.stdout), restored.stdout
    data = assert_healthy(swarm, **SHAPE)
    assert swarm.leader()["hostname"] == survivor["hostname"]
    assert not (swarm.state / swarm.name / "journal.json").exists()
    wait_replicas(swarm, swarm.leader()["address"])
    assert {"db_password"} <= names(swarm, "secret") and {"app_config"} <= names(swarm, "config")
    assert len(data["nodes"]) == 4


def test_the_backup_brings_the_swarm_back_after_every_manager_died(swarm: Cluster) -> None:
    leader = swarm.leader()["address"]
    swarm.ssh(leader, "docker service create -q --name late --no-resolve-image "
                      "swarmforge/sample:1 sleep 3600")
    archive = backups(swarm)[-1]  # the newest: replace-node's
    source = manifest(archive)["hostname"]
    for node in managers(swarm):
        if node["hostname"] == source:  # its machine lost: a fresh one at its address
            remake_host(swarm, source, node["address"])
        else:
            kill_manager(swarm, node["hostname"])

    restored = swarm.run("restore", "--from-backup", "latest", "--yes")

    assert restored.returncode == 0, restored.stderr
    taken = manifest(archive)["taken"]
    assert f"everything the swarm changed after {taken} is lost" in restored.stdout
    assert f"survivor: {manifest(archive)['hostname']}, from backup {archive.name}" in restored.stdout
    assert_healthy(swarm, **SHAPE)
    # What existed before the backup is back; what came after it is not.
    assert names(swarm, "service") == {"web"}
    assert "db_password" in names(swarm, "secret")
    assert "app_config" in names(swarm, "config")
    wait_replicas(swarm, swarm.leader()["address"])
