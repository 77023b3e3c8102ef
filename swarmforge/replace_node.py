"""The replace-node use case: check, show the plan, and (with --yes) do it, resumably.

A dead node may be replaced while another operation (a roll, a replace-node) is
unfinished, when that one stopped because of the dead node: the dead node blocks
its health wait for good, and its replacement (its entry goes, then its twin joins)
is the quorum-safe fix. The unfinished operation is set aside in this one's record and
put back in the journal when this one is done, its pending list without the node
replaced here; its own command then carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from swarmforge.backup import backup_first
from swarmforge.cluster import Cluster
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import index_of, short_address
from swarmforge.operation import (
    Operation,
    ReplacementRecord,
    ReplaceNodeRecord,
    RollRecord,
    UnfinishedError,
    restored,
    unfinished,
)
from swarmforge.picks import Pick, check_replaceable, find_node
from swarmforge.replacement import Reach, Replacement
from swarmforge.swarm import dead_nodes

OPERATION = "replace-node"


@dataclass(frozen=True)
class Outcome:
    plan: list[str]  # the steps, numbered; "(done)" on those an earlier run did
    acted: bool
    resumed: bool
    then: str = ""  # the command that resumes the operation this one interrupted


def replace_node(cluster: Cluster, query: str, *, act: bool, rotate: bool = True,
                 drain_timeout: float = 120.0, backup: bool = True,
                 show: Callable[[Outcome], None] = lambda outcome: None) -> Outcome:
    """Replace the node ``query`` names; only show the plan unless ``act``.

    ``show`` gets the plan once the checks passed, before anything is done. ``backup``:
    a live manager's replacement starts with a backup of the swarm (``invoke backup``).
    """
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION} {query}", cluster.progress.detail):
        journal = operations.journal()
        found = journal.load()
        resumed = found is not None
        reach = Reach(cluster)  # what this run reads of the cluster, read once
        if found is None:
            record = _new_record(reach, query)
        elif isinstance(found, ReplaceNodeRecord) and _names_same_node(found, query):
            record = found
        else:
            record = _new_record(reach, query, interrupting=found)
            resumed = False
        replacement = Replacement(cluster, record.replacement, lambda: journal.save(record),
                                  drain_timeout=drain_timeout, resume=record.resume, reach=reach)
        paused = restored(record.interrupted) if record.interrupted else None
        outcome = Outcome(replacement.describe(), acted=act, resumed=resumed,
                          then=paused.resume if paused else "")
        show(outcome)
        if not act:
            return outcome
        if not resumed:
            cluster.target.check_capacity(cluster.progress)  # the twin is one more machine
            if backup:
                _backup_before(reach, record.replacement)
            journal.begin(record)
        with cluster.tokens_rotated_if_failed(rotate):
            replacement.run()
        if rotate:
            cluster.rotate_tokens(*replacement.reach.swarm())
        if paused:
            journal.save(_without(paused, record.replacement))
        else:
            journal.finish()
        return outcome


def _backup_before(reach: Reach, replacement: ReplacementRecord) -> None:
    """A backup before a live manager is touched. A dead one's replacement goes on without:
    with it dead, the swarm has no manager to spare for the copy (3 managers: 2 left)."""
    if replacement.role != "manager":
        return
    entry = replacement.nodes[0]
    member = next((n for n in reach.members() if n.id == entry.node_id), None)
    if member is None or dead_nodes([member]):
        reach.cluster.progress.detail(f"no backup first: {entry.hostname} is dead, and the swarm "
                                      "cannot spare another manager for the copy")
        return
    backup_first(reach.cluster, entry.hostname, avoid=member.id)


def _new_record(reach: Reach, query: str,
                interrupting: Operation | None = None) -> ReplaceNodeRecord:
    """Find the node, refuse if replacing it now is unsafe, and describe the operation."""
    cluster = reach.cluster
    managers, workers = reach.existing_nodes()
    nodes = reach.members()
    pick = find_node(query, cluster.target.resource_type, managers, workers, nodes)
    if interrupting is not None:
        _check_may_interrupt(cluster, interrupting, pick)
    check_replaceable([pick], nodes, len(managers), len(workers), cluster.settings)
    # A machine the target sees stopped or gone is dead, whatever the swarm lists yet.
    gone = not cluster.node_facts().get(pick.ref.private_ip, NodeFacts()).reachable
    s = cluster.settings
    return ReplaceNodeRecord(
        summary=f"replace {pick.role} {pick.label}", query=query,
        resume=f"invoke {OPERATION} {query} --cluster {s.cluster} --target {s.target} --yes",
        replacement=Replacement.record_for([pick], managers, workers, dead=gone),
        interrupted=asdict(interrupting) if interrupting is not None else None)


def _check_may_interrupt(cluster: Cluster, found: Operation, pick: Pick) -> None:
    """Refuse (UnfinishedError) unless ``pick`` is dead, not ``found``'s own node, and
    ``found`` stands where setting it aside is safe: between two replacements, or with
    only its last health wait left (where a dead node stops it)."""
    current = (found.current if isinstance(found, RollRecord)
               else found.replacement if isinstance(found, ReplaceNodeRecord) else None)
    why = ""
    if pick.member is None or not dead_nodes([pick.member]):
        why = f"only a dead node may be replaced meanwhile, and {pick.label} is not"
    elif isinstance(found, ReplaceNodeRecord) and found.interrupted:
        why = "it already interrupted another operation"
    elif current is None and not isinstance(found, RollRecord):
        why = "it is not one a replacement can be set aside from"
    elif current is not None and pick.address in {n.address for n in current.nodes}:
        why = f"it is replacing {pick.label} itself: carrying it on does that"
    elif current is not None and not _only_settle_left(cluster, current):
        why = (f"its replacement of {current.names} is half done; carry it on until it stops "
               "for the dead node")
    if why:
        error = unfinished(cluster.settings.cluster, found)
        raise UnfinishedError(f"{error} ({why})")


def _only_settle_left(cluster: Cluster, current: ReplacementRecord) -> bool:
    steps = Replacement(cluster, current, lambda: None, drain_timeout=0, resume="").steps()
    return {n for n, _, _ in steps} - set(current.done) <= {"settle"}


def _without(paused: Operation, replaced: ReplacementRecord) -> Operation:
    """``paused`` as it goes back into the journal: a roll no longer has to replace the
    node just replaced (its address now holds a fresh node; it counts as replaced), and
    the replacement it has under way knows the slot the fresh manager took (its last
    check compares Terraform's plan with the cluster's slots)."""
    current = (paused.current if isinstance(paused, RollRecord)
               else paused.replacement if isinstance(paused, ReplaceNodeRecord) else None)
    address = replaced.nodes[0].address
    if current is not None and replaced.role == "manager" and replaced.new_slot is not None:
        index = index_of(address)
        if index < len(current.slots):
            current.slots[index] = replaced.new_slot
    if isinstance(paused, RollRecord) and address in paused.pending:
        paused.pending.remove(address)
        paused.replaced.append(replaced.nodes[0].hostname)
    return paused


def _names_same_node(record: ReplaceNodeRecord, query: str) -> bool:
    node = record.replacement.nodes[0]
    names = {record.query, node.address, short_address(node.address), node.name,
             node.hostname, node.ip, node.node_id}
    return query in names
