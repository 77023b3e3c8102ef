"""The roll use case: replace nodes one at a time until none is out of date.

Workers go first (``max_unavailable`` at a time), then the managers, the leader
last of all, so leadership moves once. The whole swarm must be healthy after
each node, and the roll stops at the first failure, like kops' rolling update:
a re-run carries on from the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmforge.cluster import Cluster
from swarmforge.errors import UnhealthyError
from swarmforge.nodes import NodeRef, address_of, role_of, short_address
from swarmforge.operation import Journal, ReplacementRecord, RollRecord, exclusive, unfinished
from swarmforge.picks import Pick, check_replaceable, find_node
from swarmforge.replacement import Replacement
from swarmforge.swarm import Node, assess

OPERATION = "roll"


@dataclass(frozen=True)
class RollOutcome:
    plan: list[str]
    acted: bool
    replaced: list[str]
    up_to_date: bool = False  # nothing was out of date: no plan to act on


def roll(cluster: Cluster, *, everything: bool, max_unavailable: int = 1, act: bool,
         rotate: bool = True, drain_timeout: float = 120.0,
         show: Callable[[list[str]], None] = lambda plan: None) -> RollOutcome:
    """Replace every out-of-date node (every node with ``everything``), one step at a time.

    ``show`` gets the plan once the checks passed, before anything is done.
    """
    settings = cluster.settings
    with exclusive(settings.cluster_dir, settings.cluster, f"invoke {OPERATION}"):
        journal = Journal(settings.cluster_dir)
        found = journal.load()
        if found is not None and not isinstance(found, RollRecord):
            raise unfinished(settings.cluster, found)
        record = found or _new_record(cluster, everything, max_unavailable)
        plan = _plan(record)
        show(plan)
        up_to_date = not (record.pending or record.current)
        if not act or up_to_date:
            return RollOutcome(plan, acted=False, replaced=[], up_to_date=up_to_date)
        if record.started is None:
            journal.begin(record)
        replaced = _roll(cluster, record, journal, drain_timeout)
        if rotate:
            cluster.rotate_tokens()
        journal.finish()
        return RollOutcome(plan, acted=True, replaced=replaced)


def _new_record(cluster: Cluster, everything: bool, max_unavailable: int) -> RollRecord:
    managers, workers = cluster.existing_nodes()
    nodes = cluster.members(managers)
    health = assess(nodes, len(managers), len(workers))
    if not health.healthy:
        raise UnhealthyError("refusing to roll an unhealthy swarm: " + "; ".join(health.problems)
                             + ". Replace the broken node first (`invoke replace-node NODE`).")
    stale = _out_of_date(cluster, managers, workers, everything)
    s = cluster.settings
    flags = " --all" if everything else ""
    return RollRecord(
        summary=f"roll {len(stale)} node(s)",
        resume=f"invoke roll{flags} --cluster {s.cluster} --target {s.target} --yes",
        max_unavailable=max_unavailable,
        pending=[_address(cluster, r, managers, workers) for r in stale])


def _out_of_date(cluster: Cluster, managers: list[NodeRef], workers: list[NodeRef],
                 everything: bool) -> list[NodeRef]:
    if everything:
        return [*workers, *managers]
    wanted = cluster.target.desired_image()
    if wanted is None:
        return []
    images = cluster.target.node_images([*managers, *workers])
    return [r for r in [*workers, *managers] if images.get(r.name) != wanted]


def _plan(record: RollRecord) -> list[str]:
    lines = []
    if record.current:
        lines.append(f"finish replacing {record.current.names} (interrupted)")
    workers = [a for a in record.pending if role_of(a) == "worker"]
    managers = [a for a in record.pending if role_of(a) == "manager"]
    step = record.max_unavailable
    for i in range(0, len(workers), step):
        lines.append("replace worker(s) " + ", ".join(short_address(a) for a in workers[i:i + step]))
    for address in managers:
        lines.append(f"replace manager {short_address(address)} (the leader goes last)")
    if not lines:
        lines.append("nothing to roll: every node is up to date")
    return [f"{i}. {line}" for i, line in enumerate(lines, 1)]


def _roll(cluster: Cluster, record: RollRecord, journal: Journal, drain_timeout: float) -> list[str]:
    while record.current or record.pending:
        if not record.current:
            record.current = _next_batch(cluster, record)
            journal.save(record)
        current = record.current
        Replacement(cluster, current, lambda: journal.save(record), drain_timeout=drain_timeout,
                    resume=record.resume).run()
        done = [n.address for n in current.nodes]
        record.replaced += [n.hostname for n in current.nodes]
        record.pending = [a for a in record.pending if a not in done]
        record.current = None
        journal.save(record)
    return list(record.replaced)


def _next_batch(cluster: Cluster, record: RollRecord) -> ReplacementRecord:
    """The next worker batch, else a follower manager, else the leader."""
    managers, workers = cluster.nodes_in_state()
    nodes = cluster.members(managers)
    picks = [find_node(a, cluster.target.resource_type, managers, workers, nodes)
             for a in record.pending]
    batch = _batch(picks, record.max_unavailable)
    check_replaceable(batch, nodes, len(managers), len(workers))
    return Replacement.record_for(batch, managers, workers)


def _batch(picks: Sequence[Pick], max_unavailable: int) -> list[Pick]:
    workers = [p for p in picks if p.role == "worker"]
    if workers:
        return workers[:max_unavailable]
    return [sorted(picks, key=_is_leader)[0]]


def _is_leader(pick: Pick) -> bool:
    member: Node | None = pick.member
    return member is not None and member.manager_status == "leader"


def _address(cluster: Cluster, ref: NodeRef, managers: list[NodeRef],
             workers: list[NodeRef]) -> str:
    refs = managers if ref.role == "manager" else workers
    return address_of(cluster.target.resource_type, ref.role, refs.index(ref))
