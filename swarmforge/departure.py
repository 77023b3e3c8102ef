"""The one graceful way out of the swarm, for every node that leaves it.

drain (its tasks move to other nodes, bounded) -> demote (a manager; only while the
managers that stay keep a majority) -> ``docker swarm leave`` on the node itself (skipped
when its host does not answer: a dead node cannot leave) -> ``docker node rm`` of its
entry. Swarm never removes an entry by itself: a node that goes any other way is left
listed Down for good, counted in every health check after it.

Replacement (replace-node, roll, heal) runs these as journalled steps of its own; the
scale-in of apply runs ``depart`` for the nodes that go. Manager commands retry through
an election as ``Swarm.manage`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from swarmforge.errors import CommandError, CommandTimeout, QuorumError
from swarmforge.ssh import SSH
from swarmforge.swarm import RECHECK, Node, Swarm, is_sound

Say = Callable[[str], None]
DRAIN_TIMEOUT = 120.0  # seconds a node's tasks get to move elsewhere, where no flag says


def depart(swarm: Swarm, via: str, leaving: Sequence[Node], hosts: Mapping[str, str], *,
           drain_timeout: float, say: Say = lambda line: None) -> None:
    """Take ``leaving`` out of the swarm the graceful way; ``hosts``: {node ID: its SSH
    host}, for the leave each makes on itself. ``via`` must not be one of them."""
    for node in leaving:
        swarm.drain(node, via)
    for node in leaving:
        swarm.wait_drained(node, via, drain_timeout)
    managers = [n for n in leaving if n.role == "manager"]
    if managers:
        check_majority_kept(swarm.nodes(via), managers)
    for node in managers:
        swarm.demote(node, via)
    for node in leaving:
        problem = leave_swarm(SSH(swarm.ssh.profile, attempts=1), hosts.get(node.id, ""))
        if problem:
            say(f"{node.hostname} could not leave by itself ({problem}): removing its entry")
    for node in leaving:
        swarm.remove(node, via)
        if node.id in hosts:
            swarm.ssh.forget(hosts[node.id])


def check_majority_kept(nodes: Sequence[Node], demoted: Sequence[Node]) -> None:
    """Refuse (QuorumError) unless the managers that stay, sound, are a majority of them."""
    going = {n.id for n in demoted}
    staying = [n for n in nodes if n.role == "manager" and n.id not in going]
    sound = [n for n in staying if is_sound(n)]
    if not staying or len(sound) <= len(staying) // 2:
        names = ", ".join(n.hostname for n in demoted)
        raise QuorumError(f"refusing to demote {names}: of the {len(staying)} manager(s) that "
                          f"would stay only {len(sound)} are sound, not a majority")


def leave_swarm(ssh: SSH, host: str, attempts: int = 60) -> str | None:
    """Make the node at ``host`` leave the swarm; None if it did, else why not (it does
    not answer: its host is dead, or it is hung). A just-demoted manager says it is still
    a manager for a moment: retry then (every RECHECK seconds, 15 s in all)."""
    if not host:
        return "no address known"
    for _ in range(attempts):
        try:
            result = ssh.run(host, "docker swarm leave 2>&1 >/dev/null", timeout=60)
        except CommandTimeout:  # a hung node cannot leave either: its entry goes all the same
            return "no answer within 60 s"
        except CommandError as exc:  # SSH never got there: the host is gone
            return f"{exc.what} failed: its host does not answer"
        if result.ok or "not part of a swarm" in result.stdout:
            return None
        if "manager" not in result.stdout:
            break
        time.sleep(RECHECK)
    return (result.stdout.strip() or result.stderr.strip() or "unreachable")[:100]
