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
from collections.abc import Callable, Sequence
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


def managers_by_index(cluster: Cluster) -> list[str]:
    """The managers' hostnames in Terraform's index order: the tool asks index 0 first,
    and a roll replaces the followers in this order, the leader last."""
    state = cluster.state / cluster.name / "terraform" / "terraform.tfstate"
    data = json.loads(state.read_text())
    instances = next(r["instances"] for r in data["resources"]
                     if r["name"] == "swarm_manager" and r.get("mode") == "managed")
    return [str(i["attributes"]["triggers"]["host"])
            for i in sorted(instances, key=lambda i: int(i["index_key"]))]


def pick_victim(cluster: Cluster) -> str:
    """The follower manager with the highest index: not the one the tool asks first, and
    (of two followers) not the first a roll replaces, so still alive when that one is."""
    followers = {n["hostname"] for n in cluster.status()["nodes"]
                 if n["manager_status"] == "reachable"}
    candidates = [h for h in managers_by_index(cluster)[1:] if h in followers]
    assert candidates, "no follower manager to kill"
    return candidates[-1]


def journal_says(cluster: Cluster, wanted: Callable[[dict], bool]) -> bool:
    path = cluster.state / cluster.name / "journal.json"
    try:
        return wanted(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):  # not begun, or being replaced
        return False


def replacing_a_worker(journal: dict) -> bool:
    """A roll's journal: a worker's replacement has begun (the roll takes workers first).
    A moment, not a time: replacements got fast enough that 6 s in fell on the backup
    before the first manager, whose source (the victim) came back when the copy restarted
    its Docker."""
    current = journal.get("current")
    return bool(current) and current["role"] == "worker"


def replacing_a_manager(journal: dict) -> bool:
    """A roll's journal: a manager's replacement has begun (its twin is about to join)."""
    current = journal.get("current")
    return bool(current) and current["role"] == "manager"


def kill_manager(cluster: Cluster, hostname: str) -> None:
    """SIGKILL the dockerd of ``hostname``, a node of this cluster's own sandbox (by PID)."""
    slot = int(hostname.rsplit("-", 1)[1])
    pid = int((SANDBOX / cluster.name / f"m{slot}" / "docker.pid").read_text())
    os.kill(pid, signal.SIGKILL)


def kill_during(cluster: Cluster, operation: Sequence[str], after: float = 6.0,
                when: Callable[[dict], bool] | None = None, timeout: float = 1500) -> Recovery:
    """Run ``operation`` (CLI words, with --yes), kill a follower manager ``after`` seconds
    in (or, given ``when``, as soon as its journal satisfies it), then recover as the
    messages say; the swarm is watched from outside throughout."""
    victim = pick_victim(cluster)
    found = Recovery(victim, list(operation))
    env = {**os.environ, **cluster.env, "INVOKE_SWARMFORGE_STATE_DIR": str(cluster.state)}
    with SwarmWatcher(cluster) as watcher, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([*INVOKE, *operation, "--cluster", cluster.name], cwd=REPO,
                                 env=env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                 start_new_session=True)
        try:
            if when is None:
                time.sleep(after)
            while when is not None and not journal_says(cluster, when):
                assert child.poll() is None, "the operation ended before the moment to kill"
                time.sleep(0.1)
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
