"""The roll use case: replace nodes one at a time until none is out of date.

Workers go first (``max_unavailable`` at a time), then the managers, the leader
last of all, so leadership moves once. The whole swarm must be healthy after
each node, and the roll stops at the first failure, like kops' rolling update:
a re-run carries on from the journal. Given a deadline (``stop_by``: the scheduled
rebuild's credentials expire), it starts no replacement past it and stops between
two, leaving the rest in the journal for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from swarmforge.backup import backup_first
from swarmforge.cluster import Cluster
from swarmforge.errors import ConfigError, UnhealthyError
from swarmforge.nodes import NodeRef, address_of, role_of, short_address
from swarmforge.operation import Journal, ReplacementRecord, RollRecord, unfinished
from swarmforge.picks import Pick, check_replaceable, find_node, out_of_date, replace_advice
from swarmforge.replacement import Reach, Replacement
from swarmforge.swarm import Node, assess, dead_nodes

OPERATION = "roll"


@dataclass(frozen=True)
class RollOutcome:
    plan: list[str]
    acted: bool
    replaced: list[str]
    up_to_date: bool = False  # nothing was out of date: no plan to act on
    left: tuple[str, ...] = ()  # not replaced: the deadline came first; the journal keeps them


def roll(cluster: Cluster, *, everything: bool, max_unavailable: int = 1, act: bool,
         rotate: bool = True, drain_timeout: float = 120.0, backup: bool = True,
         show: Callable[[list[str]], None] = lambda plan: None,
         stop_by: datetime | None = None) -> RollOutcome:
    """Replace every out-of-date node (every node with ``everything``), one step at a time.

    ``show`` gets the plan once the checks passed, before anything is done. ``stop_by``:
    no replacement starts past it (one already under way is finished). ``backup``: before
    its first manager, a run takes a backup of the swarm (``invoke backup``); the workers
    go first, so a failed backup stops the roll between two replacements, the journal
    keeping the managers for the next run.
    """
    settings = cluster.settings
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION}", cluster.progress.detail):
        journal = operations.journal()
        found = journal.load()
        if found is not None and not isinstance(found, RollRecord):
            raise unfinished(settings.cluster, found)
        record, why = (found, {}) if found else _new_record(cluster, everything, max_unavailable)
        plan = _plan(record, why)
        show(plan)
        up_to_date = not (record.pending or record.current)
        if act and found and up_to_date:  # interrupted after its last node: only the end is left
            if rotate:
                cluster.rotate_tokens()
            journal.finish()
            return RollOutcome(plan, acted=True, replaced=list(record.replaced))
        if not act or up_to_date:
            return RollOutcome(plan, acted=False, replaced=[], up_to_date=up_to_date)
        if record.started is None:
            if past(stop_by):  # nothing begun, nothing to leave in the journal
                return RollOutcome(plan, acted=False, replaced=[], left=_left(record))
            cluster.target.check_capacity(cluster.progress)  # each twin is one more machine
            journal.begin(record)
        with cluster.tokens_rotated_if_failed(rotate):
            replaced = _roll(cluster, record, journal, drain_timeout, stop_by, backup)
        if rotate:
            cluster.rotate_tokens()
        if record.pending:  # stopped at the deadline: the journal keeps the rest
            return RollOutcome(plan, acted=True, replaced=replaced, left=_left(record))
        journal.finish()
        return RollOutcome(plan, acted=True, replaced=replaced)


def past(deadline: datetime | None) -> bool:
    """Whether ``deadline`` (aware) has come; never without one."""
    return deadline is not None and datetime.now(timezone.utc) >= deadline


def _left(record: RollRecord) -> tuple[str, ...]:
    return tuple(short_address(a) for a in record.pending)


def _new_record(cluster: Cluster, everything: bool,
                max_unavailable: int) -> tuple[RollRecord, dict[str, list[str]]]:
    """The roll to do, and why each node of it is replaced (by Terraform address)."""
    managers, workers = cluster.existing_nodes()
    _check_batch(max_unavailable, len(workers))
    nodes = cluster.members(managers)
    health = assess(nodes, len(managers), len(workers))
    if not health.healthy:
        dead = dead_nodes(nodes)
        advice = (replace_advice(cluster.settings, dead) if dead
                  else "Replace the broken node first (`invoke replace-node NODE`).")
        raise UnhealthyError("refusing to roll an unhealthy swarm: " + "; ".join(health.problems)
                             + ". " + advice)
    refs = [*workers, *managers]
    # The facts were read with the nodes (one look-up): by swarm address, here by name.
    at = cluster.node_facts()
    facts = {r.name: at[r.private_ip] for r in refs if r.private_ip in at}
    stale = out_of_date(refs, facts, cluster.target.desired_image(), everything)
    why = {_address(cluster, r, managers, workers): stale[r.name] for r in refs if r.name in stale}
    s = cluster.settings
    flags = " --all" if everything else ""
    return RollRecord(
        summary=f"roll {len(stale)} node(s)",
        resume=f"invoke roll{flags} --cluster {s.cluster} --target {s.target} --yes",
        max_unavailable=max_unavailable, pending=list(why)), why


def _plan(record: RollRecord, why: Mapping[str, Sequence[str]]) -> list[str]:
    """The numbered steps; under each, why its nodes are replaced (when the roll was
    planned in this run: a resumed one knows only which nodes are left)."""
    steps: list[tuple[str, list[str]]] = []
    if record.current:
        steps.append((f"finish replacing {record.current.names} (interrupted)", []))
    workers = [a for a in record.pending if role_of(a) == "worker"]
    managers = [a for a in record.pending if role_of(a) == "manager"]
    size = record.max_unavailable
    for i in range(0, len(workers), size):
        batch = workers[i:i + size]
        steps.append(("replace worker(s) " + ", ".join(short_address(a) for a in batch), batch))
    for address in managers:
        steps.append((f"replace manager {short_address(address)} (the leader goes last)", [address]))
    if not steps:
        steps.append(("nothing to roll: every node is up to date", []))
    lines = []
    for i, (step, addresses) in enumerate(steps, 1):
        lines.append(f"{i}. {step}")
        lines += [f"   {short_address(a)}: {'; '.join(why[a])}" for a in addresses if why.get(a)]
    return lines


def _roll(cluster: Cluster, record: RollRecord, journal: Journal, drain_timeout: float,
          stop_by: datetime | None, backup: bool) -> list[str]:
    reach = Reach(cluster)  # what the roll reads of the cluster, from one replacement to the next
    while record.current or record.pending:
        if not record.current:
            if past(stop_by):
                break  # between two replacements: the next run starts the next one
            batch = _next_batch(reach, record)
            if backup and batch.role == "manager":  # once a run, before its first manager
                backup_first(cluster, batch.names, "the roll stopped before it (the journal "
                             f"keeps the rest: `{record.resume}` carries on)",
                             avoid=batch.nodes[0].node_id or "")
                backup = False
            record.current = batch
            journal.save(record)
        current = record.current
        Replacement(cluster, current, lambda: journal.save(record), drain_timeout=drain_timeout,
                    resume=record.resume, reach=reach).run()
        done = [n.address for n in current.nodes]
        record.replaced += [n.hostname for n in current.nodes]
        record.pending = [a for a in record.pending if a not in done]
        record.current = None
        journal.save(record)
    return list(record.replaced)


def _next_batch(reach: Reach, record: RollRecord) -> ReplacementRecord:
    """The next worker batch, else a follower manager, else the leader."""
    cluster = reach.cluster
    managers, workers = reach.nodes_in_state()
    nodes = reach.members()
    picks = [find_node(a, cluster.target.resource_type, managers, workers, nodes)
             for a in record.pending]
    batch = _batch(picks, record.max_unavailable)
    check_replaceable(batch, nodes, len(managers), len(workers), cluster.settings, record.resume)
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


def _check_batch(max_unavailable: int, workers: int) -> None:
    """More workers at once than the cluster has is a typo: refused before anything is done."""
    most = max(workers, 1)  # a cluster of managers only still takes the default, 1
    if not 1 <= max_unavailable <= most:
        raise ConfigError([f"--max-unavailable: {max_unavailable} must be from 1 to {most} "
                           f"(the cluster has {workers} worker(s))"])
