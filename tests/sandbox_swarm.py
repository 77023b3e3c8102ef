"""A sandbox swarm seen from the outside, for the tests that change one under load.

``Cluster`` drives one cluster through the real `invoke` CLI and reads it over
SSH; ``SwarmWatcher`` polls it in the background while an operation runs: the
replica count of the ``web`` service and whether a majority of managers answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import invoke
from tests.leaks import Poller

SANDBOX = Path("/run/swarmforge")
SERVICE_REPLICAS = 6


@dataclass
class Cluster:
    name: str
    state: Path
    # Settings every command on this cluster gets (INVOKE_SWARMFORGE_*), beside state_dir.
    env: dict[str, str] = field(default_factory=dict)

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
        result = invoke("status", "--cluster", self.name, "--json", state_dir=self.state,
                        env=self.env)
        assert result.returncode in (0, 3), result.stderr
        return json.loads(result.stdout)

    def leader(self) -> dict:
        return next(n for n in self.status()["nodes"] if n["manager_status"] == "leader")

    def node(self, hostname: str) -> dict:
        return next(n for n in self.status()["nodes"] if n["hostname"] == hostname)

    def run(self, *args: str, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = invoke(*args, "--cluster", self.name, state_dir=self.state, timeout=timeout,
                        env={**self.env, **(env or {})})
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
        self._hosts = self._listed_first(cluster)
        self._net = cluster.network_prefix

    @staticmethod
    def _listed_first(cluster: Cluster) -> list[str]:
        """Every address a manager can have, those of the managers listed reachable now
        first: after replacements the first slots may hold no host, and each such address
        costs a poll SSH's connect timeout (on a busy machine, the first poll took a whole
        dead manager's replacement)."""
        candidates = cluster.manager_candidates()
        result = invoke("status", "--cluster", cluster.name, "--json", state_dir=cluster.state,
                        env=cluster.env)
        try:
            nodes = json.loads(result.stdout)["nodes"]
        except (ValueError, KeyError):  # no manager answers: every address, in slot order
            return candidates
        listed = {n["address"] for n in nodes if n["manager_status"] in ("leader", "reachable")}
        return sorted(candidates, key=lambda host: host not in listed)

    def poll(self) -> bool:
        self.samples.append(self._sample())
        return False

    def _sample(self) -> Sample:
        for host in list(self._hosts):
            try:
                result = subprocess.run(
                    ["ssh", "-F", str(self.cluster.ssh_config), "-o", "ConnectTimeout=1", host,
                     self.QUERY], capture_output=True, text=True, check=False, timeout=20)
            except subprocess.TimeoutExpired:  # no answer in time: as silent as a refusal
                continue
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

    def assert_quorum_held(self, least: int = 11) -> None:
        """Every answer had a majority of managers reachable, from ``least`` answers on."""
        answered = [s for s in self.samples if s.answered]
        assert len(answered) >= least, f"the watcher saw too little: {self.samples}"
        for sample in answered:
            assert sample.reachable > sample.managers // 2, sample
        # A leader election takes about a second; quorum lost would be silence for good.
        longest, run = 0, 0
        for sample in self.samples:
            run = 0 if sample.answered else run + 1
            longest = max(longest, run)
        assert longest <= 10, f"no manager answered for {longest} polls in a row"

    def assert_managers_never_above(self, managers: int) -> None:
        """No listing held more managers: a dead one's entry went before its twin joined
        (beside it, the twin would have made a raft of 4 with 2 voting)."""
        listed = [s.managers for s in self.samples if s.answered]
        assert listed and max(listed) <= managers, listed

    def assert_replicas_held(self, tasks_moved: int) -> None:
        """Desired stays; running never drops by more than the tasks a drain moves at once
        (Swarm stops a drained task and starts its successor side by side) and ends full."""
        answered = [s for s in self.samples if s.answered]
        assert all(s.desired == SERVICE_REPLICAS for s in answered), answered
        running = [s.running for s in answered]
        assert min(running) >= SERVICE_REPLICAS - tasks_moved, (tasks_moved, running)
        assert answered[-1].running == SERVICE_REPLICAS, running


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


def start_web(cluster: Cluster) -> None:
    """The ``web`` service the watcher follows: busybox sleepers, SERVICE_REPLICAS of them."""
    leader = cluster.leader()["address"]
    cluster.ssh(leader, f"docker service create -q --name web --replicas {SERVICE_REPLICAS} "
                        "--no-resolve-image --stop-grace-period 1s swarmforge/sample:1 sleep 3600")
    wait_replicas(cluster, leader)
