"""Scale-in: apply with fewer managers or workers than exist.

Terraform alone would destroy the hosts at the highest indices with their tasks on them
and their entries left Down for good (and, for managers, the raft majority counted with
dead members). So the nodes that go leave first, the graceful way (departure.py): the
highest-index workers together, then the managers one at a time (5 -> 3, 3 -> 1), each
demoted only while the managers that stay keep a majority; then Terraform shrinks the
counts, its plan checked to remove those nodes and nothing else.

Asked before it is done like any removal: apply's plan names the nodes that go, and
without --yes (or a "y" at a terminal) it is refused. Killed half-way, a re-run carries
on: a node already out of the swarm is only destroyed.
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmforge.departure import DRAIN_TIMEOUT, depart
from swarmforge.errors import QuorumError, SwarmError, UnhealthyError
from swarmforge.nodes import NodeRef, address_of, join_step_address
from swarmforge.progress import Progress
from swarmforge.swarm import Node, Swarm, assess, member_at
from swarmforge.terraform_output import Plan


def shrinking(wanted: tuple[int, int], managers: Sequence[NodeRef],
              workers: Sequence[NodeRef]) -> bool:
    """Whether ``wanted`` (managers, workers) is fewer of either than exist."""
    return len(managers) > wanted[0] or len(workers) > wanted[1]


def refuse_unconfirmed(wanted: tuple[int, int], managers: Sequence[NodeRef],
                       workers: Sequence[NodeRef]) -> None:
    """Nothing is destroyed unasked: without a confirmation, the refusal says what would go."""
    going = ", ".join(r.name for r in [*workers[wanted[1]:], *managers[wanted[0]:]])
    raise QuorumError(
        f"refusing to scale down from {len(managers)} managers + {len(workers)} workers to "
        f"{wanted[0]} + {wanted[1]} without a confirmation: {going} would leave the swarm "
        "(drained, demoted, removed) and be destroyed. Pass --yes (or answer y at a "
        "terminal) to do it.")


def leave_beyond(swarm: Swarm, via: str, managers: Sequence[NodeRef],
                 workers: Sequence[NodeRef], wanted: tuple[int, int], progress: Progress) -> None:
    """The nodes beyond ``wanted`` (managers, workers) leave the swarm: the workers together,
    the highest index first, then the managers one at a time. ``via``: a manager that stays."""
    going = [*reversed(workers[wanted[1]:]), *reversed(managers[wanted[0]:])]
    members = swarm.nodes(via)
    found = [(ref, m) for ref in going if (m := member_at(members, ref.private_ip))]
    leaving = [m for _, m in found]
    _check_healthy(members, leaving, *wanted)
    hosts = {m.id: ref.ssh_host for ref, m in found}
    workers_leaving = [m for m in leaving if m.role == "worker"]
    if workers_leaving:
        with progress.step("scale-in: " + ", ".join(m.hostname for m in workers_leaving)
                           + " drain, leave the swarm and are removed"):
            depart(swarm, via, workers_leaving, hosts, drain_timeout=DRAIN_TIMEOUT,
                   say=progress.detail)
    for node in (m for m in leaving if m.role == "manager"):
        with progress.step(f"scale-in: manager {node.hostname} drains, is demoted, leaves the "
                           "swarm and is removed"):
            depart(swarm, via, [node], hosts, drain_timeout=DRAIN_TIMEOUT, say=progress.detail)


def _check_healthy(members: Sequence[Node], leaving: Sequence[Node], managers: int,
                   workers: int) -> None:
    """The nodes that stay must be healthy: a scale-in never starts on a broken swarm."""
    health = assess(members, managers, workers, ignore=frozenset(m.id for m in leaving))
    if not health.healthy:
        raise UnhealthyError("refusing to scale in: the nodes that stay are not healthy: "
                             + "; ".join(health.problems) + ". Heal first (`invoke heal`).")


def refuse_other_removals(plan: Plan, resource: str, wanted: tuple[int, int],
                          managers: Sequence[NodeRef], workers: Sequence[NodeRef]) -> None:
    """Terraform's plan at the smaller counts may remove the nodes beyond them and their
    swarm steps, and nothing else."""
    going_managers, going_workers = managers[wanted[0]:], workers[wanted[1]:]
    expected = {join_step_address(r.name) for r in [*going_managers, *going_workers]}
    expected |= {address_of(resource, "manager", i) for i in range(wanted[0], len(managers))}
    expected |= {address_of(resource, "worker", i) for i in range(wanted[1], len(workers))}
    unexpected = [c.address for c in plan.removals() if c.address not in expected]
    if unexpected:
        raise SwarmError("refusing to apply the scale-in: Terraform would also remove "
                         + ", ".join(unexpected))
