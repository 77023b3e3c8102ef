"""A manager's dockerd killed while an operation runs, and the recovery an operator would make.

Shared by tests/test_chaos.py (one run of each order) and benchmarks/chaos.py (many in a
row). The recovery is what the failed operation's message says, nothing more: at most the
replace-node of the dead manager, then the interrupted operation once more.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.conftest import INVOKE, REPO
from tests.sandbox_swarm import SANDBOX, Cluster, SwarmWatcher

HEALTHY_SHAPE = (3, 1)  # managers, workers: the small cluster the scenarios run on


@dataclass
class Recovery:
    """One scenario: what the operation said when the manager died, and what it took."""

    victim: str
    operation: list[str]
    stopped_after: float = 0.0  # seconds from the kill to the operation's exit
    rc: int = 0
    message: str = ""  # the operation's stderr (its last lines)
    commands: list[str] = field(default_factory=list)  # the recovery commands run
    seconds: float = 0.0  # from the kill to a healthy swarm
    healthy: bool = False
    quorum_problem: str = ""  # empty: a majority of managers answered throughout

    @property
    def clean(self) -> bool:
        return self.healthy and len(self.commands) <= 2 and not self.quorum_problem


def terraform_index_zero(cluster: Cluster) -> str:
    """The manager at index 0 in the Terraform state: the one the tool asks first."""
    state = cluster.state / cluster.name / "terraform" / "terraform.tfstate"
    data = json.loads(state.read_text())
    for resource in data["resources"]:
        if resource["name"] == "swarm_manager" and resource.get("mode") == "managed":
            for instance in resource["instances"]:
                if instance.get("index_key") == 0:
                    return str(instance["attributes"]["triggers"]["host"])
    raise AssertionError("no manager at index 0 in the Terraform state")


def pick_victim(cluster: Cluster) -> str:
    """A follower manager the tool does not ask first: the case the issue saw."""
    first = terraform_index_zero(cluster)
    followers = sorted(n["hostname"] for n in cluster.status()["nodes"]
                       if n["manager_status"] == "reachable" and n["hostname"] != first)
    assert followers, "no follower manager to kill"
    return followers[-1]


def kill_manager(cluster: Cluster, hostname: str) -> None:
    """SIGKILL the dockerd of ``hostname``, a node of this cluster's own sandbox (by PID)."""
    slot = int(hostname.rsplit("-", 1)[1])
    pid = int((SANDBOX / cluster.name / f"m{slot}" / "docker.pid").read_text())
    os.kill(pid, signal.SIGKILL)


def kill_during(cluster: Cluster, operation: Sequence[str], after: float = 6.0,
                timeout: float = 1500) -> Recovery:
    """Run ``operation`` (CLI words, with --yes), kill a follower manager ``after`` seconds
    in, then recover as the messages say; the swarm is watched from outside throughout."""
    victim = pick_victim(cluster)
    found = Recovery(victim, list(operation))
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(cluster.state)}
    with SwarmWatcher(cluster) as watcher, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([*INVOKE, *operation, "--cluster", cluster.name], cwd=REPO,
                                 env=env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                 start_new_session=True)
        try:
            time.sleep(after)
            kill_manager(cluster, victim)
            killed = time.monotonic()
            found.rc = child.wait(timeout=timeout)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        found.stopped_after = time.monotonic() - killed
        err.seek(0)
        found.message = err.read().strip()
        _recover(cluster, found, operation, timeout)
        found.seconds = time.monotonic() - killed
    found.quorum_problem = _quorum_problem(watcher)
    return found


def _recover(cluster: Cluster, found: Recovery, operation: Sequence[str],
             timeout: float) -> None:
    """What the messages say to do: replace the dead manager, then carry on."""
    if not _healthy(cluster):
        found.commands.append(f"replace-node {found.victim} --yes")
        fix = cluster.run("replace-node", found.victim, "--yes", timeout=timeout)
        if fix.returncode != 0:
            found.message += f"\n[replace-node failed]\n{fix.stderr.strip()}"
            return
        resume = re.search(r"run `invoke ([^`]*)` to carry on", fix.stdout)
        if resume:  # it interrupted the operation: the journal holds it again
            words = [w for w in resume.group(1).split() if w != "--cluster" and w != cluster.name]
            found.commands.append(" ".join(words))
            again = cluster.run(*words, timeout=timeout)
            if again.returncode != 0:
                found.message += f"\n[resume failed]\n{again.stderr.strip()}"
                return
    elif found.rc != 0:  # healthy, yet it failed: the operation itself is left to redo
        found.commands.append(" ".join(operation))
        cluster.run(*operation, timeout=timeout)
    found.healthy = _healthy(cluster) and not (cluster.state / cluster.name / "journal.json").exists()


def _healthy(cluster: Cluster) -> bool:
    data = cluster.status()
    roles = [n["role"] for n in data["nodes"]]
    return bool(data["healthy"]) and (roles.count("manager"), roles.count("worker")) == HEALTHY_SHAPE


def _quorum_problem(watcher: SwarmWatcher) -> str:
    try:
        watcher.assert_quorum_held()
    except AssertionError as exc:
        return str(exc) or "quorum not held"
    return ""
