"""The replace-node use case: check, show the plan, and (with --yes) do it, resumably."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from swarmforge.cluster import Cluster
from swarmforge.nodes import short_address
from swarmforge.operation import ReplaceNodeRecord, unfinished
from swarmforge.picks import check_replaceable, find_node
from swarmforge.replacement import Replacement

OPERATION = "replace-node"


@dataclass(frozen=True)
class Outcome:
    plan: list[str]  # the steps, numbered; "(done)" on those an earlier run did
    acted: bool
    resumed: bool


def replace_node(cluster: Cluster, query: str, *, act: bool, rotate: bool = True,
                 drain_timeout: float = 120.0,
                 show: Callable[[Outcome], None] = lambda outcome: None) -> Outcome:
    """Replace the node ``query`` names; only show the plan unless ``act``.

    ``show`` gets the plan once the checks passed, before anything is done.
    """
    settings = cluster.settings
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION} {query}", cluster.progress.detail):
        journal = operations.journal()
        found = journal.load()
        resumed = found is not None
        if found is None:
            record = _new_record(cluster, query)
        elif isinstance(found, ReplaceNodeRecord) and _names_same_node(found, query):
            record = found
        else:
            raise unfinished(settings.cluster, found)
        replacement = Replacement(cluster, record.replacement, lambda: journal.save(record),
                                  drain_timeout=drain_timeout, resume=record.resume)
        outcome = Outcome(replacement.describe(), acted=act, resumed=resumed)
        show(outcome)
        if not act:
            return outcome
        if not resumed:
            cluster.target.check_capacity(cluster.progress)  # the twin is one more machine
            journal.begin(record)
        replacement.run()
        if rotate:
            cluster.rotate_tokens()
        journal.finish()
        return outcome


def _new_record(cluster: Cluster, query: str) -> ReplaceNodeRecord:
    """Find the node, refuse if replacing it now is unsafe, and describe the operation."""
    managers, workers = cluster.existing_nodes()
    nodes = cluster.members(managers)
    pick = find_node(query, cluster.target.resource_type, managers, workers, nodes)
    check_replaceable([pick], nodes, len(managers), len(workers))
    s = cluster.settings
    return ReplaceNodeRecord(
        summary=f"replace {pick.role} {pick.label}", query=query,
        resume=f"invoke {OPERATION} {query} --cluster {s.cluster} --target {s.target} --yes",
        replacement=Replacement.record_for([pick], managers, workers))


def _names_same_node(record: ReplaceNodeRecord, query: str) -> bool:
    node = record.replacement.nodes[0]
    names = {record.query, node.address, short_address(node.address), node.name,
             node.hostname, node.ip, node.node_id}
    return query in names
