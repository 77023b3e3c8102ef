"""The replace-node use case: check, show the plan, and (with --yes) do it, resumably."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarmforge.cluster import Cluster
from swarmforge.operation import Journal, exclusive, unfinished
from swarmforge.replacement import Replacement, check_replaceable, find_node

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
    with exclusive(settings.cluster_dir, settings.cluster, f"invoke {OPERATION} {query}"):
        journal = Journal(settings.cluster_dir)
        record = journal.load()
        resumed = record is not None
        if record is None:
            record = _new_record(cluster, query)
        elif not _names_same_node(record, query):
            raise unfinished(settings.cluster, record)
        replacement = Replacement(cluster, record, journal.update, drain_timeout=drain_timeout,
                                  resume=record["resume"])
        outcome = Outcome(replacement.describe(), acted=act, resumed=resumed)
        show(outcome)
        if not act:
            return outcome
        if not resumed:
            record = journal.begin(record)
            replacement.record = record
        replacement.run()
        if rotate:
            cluster.rotate_tokens()
        journal.finish()
        return outcome


def _new_record(cluster: Cluster, query: str) -> dict[str, Any]:
    """Find the node, refuse if replacing it now is unsafe, and describe the operation."""
    managers, workers = cluster.existing_nodes()
    nodes = cluster.members(managers)
    pick = find_node(query, cluster.target.resource_type, managers, workers, nodes)
    check_replaceable([pick], nodes, len(managers), len(workers))
    s = cluster.settings
    return {
        "operation": OPERATION,
        "summary": f"replace {pick.role} {pick.label}",
        "query": query,
        "resume": f"invoke {OPERATION} {query} --cluster {s.cluster} --target {s.target} --yes",
        **Replacement.record_for([pick], managers, workers),
    }


def _names_same_node(record: dict[str, Any], query: str) -> bool:
    if record.get("operation") != OPERATION:
        return False
    node = record["nodes"][0]
    names = {record["query"], node["address"], node["address"].split(".", 1)[1], node["name"],
             node["hostname"], node["ip"], node.get("node_id")}
    return query in names
