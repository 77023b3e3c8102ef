"""replace-node, roll and token rotation on a real sandbox swarm (3 managers + 2 workers).

A service runs on the swarm throughout, and a watcher polls the swarm from the
outside during every operation: the service's replica counts, and whether a
majority of the managers answers. The tests run in file order on one cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.leaks import ArgvWatcher, Poller

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

SANDBOX = Path("/run/swarmforge")
SERVICE_REPLICAS = 6


@dataclass
class Cluster:
    name: str
    state: Path

    @property
    def ssh_config(self) -> Path:
        return self.state / self.name / "ssh" / "config"

    @property
    def network_prefix(self) -> str:
        layout = json.loads((SANDBOX / self.name / "sandbox.json").read_text())
        return layout["network"].rsplit(".", 1)[0]

    def ssh(self, host: str, command: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), host, command], input=stdin,
                              capture_output=True, text=True, check=check, timeout=60)

    def status(self) -> dict:
        result = invoke("status", "--cluster", self.name, "--json", state_dir=self.state)
        assert result.returncode in (0, 3), result.stderr
        return json.loads(result.stdout)

    def leader(self) -> dict:
        return next(n for n in self.status()["nodes"] if n["manager_status"] == "leader")

    def node(self, hostname: str) -> dict:
        return next(n for n in self.status()["nodes"] if n["hostname"] == hostname)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        result = invoke(*args, "--cluster", self.name, state_dir=self.state, timeout=timeout)
        assert "SWMTKN-1" not in result.stdout + result.stderr
        return result

    def manager_candidates(self) -> list[str]:
        """Every address a manager can have (slots 0-15)."""
        return [f"{self.network_prefix}.{10 + slot}" for slot in range(16)]

    def kill_dockerd(self, host_dir: str) -> None:
        pid = int((SANDBOX / self.name / host_dir / "docker.pid").read_text())
        os.kill(pid, signal.SIGKILL)

    def wait_status(self, hostname: str, wanted: set[str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.node(hostname)
            if node["status"] in wanted or node["manager_status"] in wanted:
                return
            time.sleep(2)
        raise AssertionError(f"{hostname} never became {wanted}")


@dataclass
class Sample:
    answered: bool
    managers: int = 0
    reachable: int = 0
    running: int = 0
    desired: int = 0


class SwarmWatcher(Poller):
    """Polls the swarm from outside: managers reachable of all, and the service's replicas."""

    QUERY = ("docker node ls --format '{{.ManagerStatus}}' && echo --- && "
             "docker service ls --filter name=web --format '{{.Replicas}}'")

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(0.3)
        self.cluster = cluster
        self.samples: list[Sample] = []
        self._hosts = cluster.manager_candidates()
        self._net = cluster.network_prefix

    def poll(self) -> bool:
        self.samples.append(self._sample())
        return False

    def _sample(self) -> Sample:
        for host in list(self._hosts):
            result = subprocess.run(
                ["ssh", "-F", str(self.cluster.ssh_config), "-o", "ConnectTimeout=1", host,
                 self.QUERY], capture_output=True, text=True, check=False, timeout=20)
            if result.returncode != 0:
                continue
            self._hosts.remove(host)
            self._hosts.insert(0, host)  # ask it first next time
            statuses, _, replicas = result.stdout.partition("---\n")
            managers = [s for s in statuses.split("\n") if s.strip()]
            running, _, desired = replicas.strip().partition("/")
            return Sample(True, len(managers),
                          sum(s in ("Leader", "Reachable") for s in managers),
                          int(running or 0), int(desired or 0))
        return Sample(False)

    def assert_quorum_held(self) -> None:
        answered = [s for s in self.samples if s.answered]
        assert len(answered) > 10, "the watcher saw too little"
        for sample in answered:
            assert sample.reachable > sample.managers // 2, sample
        # A leader election takes about a second; quorum lost would be silence for good.
        longest, run = 0, 0
        for sample in self.samples:
            run = 0 if sample.answered else run + 1
            longest = max(longest, run)
        assert longest <= 10, f"no manager answered for {longest} polls in a row"

    def assert_replicas_held(self, tasks_moved: int) -> None:
        """Desired stays; running never drops by more than the tasks a drain moves at once
        (Swarm stops a drained task and starts its successor side by side) and ends full."""
        answered = [s for s in self.samples if s.answered]
        assert all(s.desired == SERVICE_REPLICAS for s in answered), answered
        assert min(s.running for s in answered) >= SERVICE_REPLICAS - tasks_moved
        assert answered[-1].running == SERVICE_REPLICAS


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("rp"), state_root)
    result = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
    assert result.returncode == 0, result.stderr
    leader = cluster.leader()["address"]
    cluster.ssh(leader, f"docker service create -q --name web --replicas {SERVICE_REPLICAS} "
                        "--no-resolve-image --stop-grace-period 1s swarmforge/sample:1 sleep 3600")
    wait_replicas(cluster, leader)
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def wait_replicas(cluster: Cluster, via: str) -> None:
    for _ in range(60):
        out = cluster.ssh(via, "docker service ls --filter name=web --format '{{.Replicas}}'").stdout
        if out.strip() == f"{SERVICE_REPLICAS}/{SERVICE_REPLICAS}":
            return
        time.sleep(1)
    raise AssertionError(f"service web never got {SERVICE_REPLICAS} replicas")


def tasks_on(cluster: Cluster, hostname: str) -> int:
    out = cluster.ssh(cluster.leader()["address"],
                      f"docker node ps {hostname} -q --filter desired-state=running").stdout
    return len(out.split())


def ids(cluster: Cluster) -> dict[str, str]:
    return {n["hostname"]: n["id"] for n in cluster.status()["nodes"]}


def assert_healthy(cluster: Cluster, managers: int = 3, workers: int = 2) -> dict:
    data = cluster.status()
    assert data["healthy"], data["problems"]
    roles = [n["role"] for n in data["nodes"]]
    assert (roles.count("manager"), roles.count("worker")) == (managers, workers)
    return data


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
        moved = tasks_on(swarm, target["hostname"])
        with SwarmWatcher(swarm) as watcher:
            result = swarm.run("replace-node", target["hostname"], "--yes")
        assert result.returncode == 0, result.stderr
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

    result = swarm.run("replace-node", dead["hostname"], "--yes")
    assert result.returncode == 0, result.stderr
    assert dead["id"] not in ids(swarm).values()
    assert_healthy(swarm)


def test_a_replacement_killed_after_the_drain_resumes(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-1"
    journal = swarm.state / swarm.name / "journal.json"
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state)}
    first = subprocess.Popen([*INVOKE, "replace-node", worker, "--cluster", swarm.name, "--yes"],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and "drain" in json.loads(journal.read_text())["done"]):
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
