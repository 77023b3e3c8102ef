"""No join token outlives its use (issue 17.1 and 17.3), on the sandbox.

A host made while tokens are in Terraform's environment (a scale-up makes it in
phase 2) runs long-lived daemons: they must not inherit the tokens. A run that
fails after the tokens left the process rotates them, and leaves no script that
held a join request on the node.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import unique_cluster
from tests.leaks import Poller
from tests.sandbox_swarm import SANDBOX, Cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


STARTED = time.time()
SANDBOX_BYTES = f"{SANDBOX}/".encode()


@pytest.fixture(scope="module")
def small(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("sftok"), state_root)
    yield cluster
    cluster.run("destroy", "--yes")


def processes_holding(needle: bytes, since: float, cluster: str) -> list[str]:
    """Every readable process started after ``since`` (a time.time()) whose environment
    or argv holds ``needle`` (pid, argv). An older process cannot have got them from this
    test's runs: an environment is fixed when a process starts. Not counted: a running
    Terraform and what it started (Terraform is where the tokens go, and it hands its
    environment to its plugins and local-exec) and the hosts of other sandbox clusters
    (another test's, made by whatever code that run used): on CI, where tests run one
    at a time, neither exists when this looks."""
    booted = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                  if line.startswith("btime "))
    ticks = os.sysconf("SC_CLK_TCK")
    parents, names, young = {}, {}, set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            name, fields = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        pid, values = int(stat.parent.name), fields.split()
        parents[pid], names[pid] = int(values[1]), name.split("(", 1)[1]
        if booted + int(values[19]) / ticks >= since - 1:  # starttime: ticks after boot
            young.add(pid)

    def under_terraform(pid: int) -> bool:
        while pid > 1:
            if names.get(pid) == "terraform":
                return True
            pid = parents.get(pid, 0)
        return False

    found = []
    for pid in sorted(young):
        for part in ("environ", "cmdline"):
            try:
                data = Path(f"/proc/{pid}/{part}").read_bytes()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            elsewhere = SANDBOX_BYTES in argv and SANDBOX_BYTES + cluster.encode() + b"/" not in argv
            if needle in data and not under_terraform(pid) and not elsewhere:
                shown = argv.replace(b"\0", b" ")[:160].decode(errors="replace")
                found.append(f"{pid} ({part}): {shown}")
    return found


def tokens(cluster: Cluster) -> tuple[str, str]:
    out = cluster.ssh(cluster.leader()["address"],
                      "docker swarm join-token -q manager; docker swarm join-token -q worker")
    manager, worker = out.stdout.split()
    return manager, worker


class DaemonKiller(Poller):
    """SIGKILLs the dockerd of the given hosts the moment ``once`` appears: the node
    script is on the new host, so the tokens are in Terraform's hands by then."""

    def __init__(self, once: Path, hosts: list[Path]) -> None:
        super().__init__(interval=0.005)
        self.once = once
        self.hosts = hosts
        self.killed = False
        self.started = time.time()  # a file left by an older host is not the sign

    def poll(self) -> bool:
        try:
            if self.once.stat().st_mtime < self.started:
                return False
        except OSError:
            return False
        for host in self.hosts:
            os.kill(int((host / "docker.pid").read_text()), signal.SIGKILL)
        self.killed = True
        return True


def test_daemons_of_a_host_made_with_tokens_about_do_not_hold_them(small: Cluster) -> None:
    first = small.run("apply", "--managers", "1", "--workers", "0", "--yes")
    assert first.returncode == 0, first.stderr
    # Phase 2 makes the worker's host with the tokens in Terraform's environment.
    grown = small.run("apply", "--managers", "1", "--workers", "1", "--yes")
    assert grown.returncode == 0, grown.stderr
    assert "joining through" in grown.stderr  # the tokens were read and handed out
    worker = SANDBOX / small.name / "w0"
    daemons = [int((worker / name).read_text()) for name in ("docker.pid", "sshd.pid")]
    assert all(Path(f"/proc/{pid}/environ").read_bytes() for pid in daemons)  # readable
    held = processes_holding(b"SWMTKN-", STARTED, small.name)
    assert held == [], "\n".join(held)


def test_a_run_that_fails_after_the_tokens_left_rotates_them(small: Cluster) -> None:
    before = tokens(small)
    worker = SANDBOX / small.name / "w1"
    # The new worker's dockerd dies as its swarm step starts: its join fails.
    with DaemonKiller(worker / "provision" / "swarm-node.sh", [worker]) as killer:
        failed = small.run("apply", "--managers", "1", "--workers", "2", "--yes")
    assert killer.killed, "the test never got to stop the new worker's dockerd"
    assert failed.returncode != 0
    assert f'swarm_join["{small.name}-worker-1"]' in failed.stderr
    assert "rotating the join tokens: they left this process for a run that failed" \
        in failed.stderr
    after = tokens(small)
    assert after[0] != before[0] and after[1] != before[1]
    # Nothing on the node that held a join request is left: no request, no script.
    left = sorted(p.name for p in (worker / "provision").iterdir())
    assert left == ["swarm-node.sh"], left
    held = processes_holding(b"SWMTKN-", STARTED, small.name)
    assert held == [], "\n".join(held)


def test_a_replacement_that_fails_after_the_tokens_left_rotates_them(small: Cluster) -> None:
    before = tokens(small)
    # The worker whose join failed above is the one to replace; its new host fails too.
    worker = SANDBOX / small.name / "w1"
    node = f"{small.name}-worker-1"
    with DaemonKiller(worker / "provision" / "swarm-node.sh", [worker]) as killer:
        failed = small.run("replace-node", node, "--yes")
    assert killer.killed, f"the test never got to stop the new worker's dockerd: {failed.stderr}"
    assert failed.returncode != 0
    assert "rotating the join tokens: they left this process for a run that failed" \
        in failed.stderr
    after = tokens(small)
    assert after[0] != before[0] and after[1] != before[1]
    assert sorted(p.name for p in (worker / "provision").iterdir()) == ["swarm-node.sh"]

    resumed = small.run("replace-node", node, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert "rotating the join tokens: they left" not in resumed.stderr


def test_a_rotation_that_cannot_run_is_said_with_the_way_to_do_it_later(small: Cluster) -> None:
    manager, worker = SANDBOX / small.name / "m0", SANDBOX / small.name / "w2"
    # The only manager dies with the new worker's dockerd: the join fails, and no
    # manager is left to rotate the tokens.
    with DaemonKiller(worker / "provision" / "swarm-node.sh", [worker, manager]) as killer:
        failed = small.run("apply", "--managers", "1", "--workers", "3", "--yes")
    assert killer.killed, "the test never got to stop the dockerds"
    assert failed.returncode != 0
    assert "rotating the join tokens: they left this process for a run that failed" \
        in failed.stderr
    cannot = [line for line in failed.stderr.splitlines() if "could not rotate" in line]
    assert len(cannot) == 1, failed.stderr
    assert "docker swarm join-token --rotate" in cannot[0]
    # The original error is still the one the run ends with.
    assert "terraform apply failed" in failed.stderr
    assert failed.stderr.rstrip().splitlines()[-1] != cannot[0]
