"""What a target sees of each node now, beside what Terraform's outputs last said.

Terraform's outputs are as fresh as the last Terraform run: an instance stopped
and started since (EC2 maintenance, a person) has a new public address, and one
that is stopped has none. A target reads each node's live facts in one go
(``Target.node_facts``); ``refreshed`` turns them into the addresses to reach the
nodes at, and says what changed. ``drift`` is how a node differs from what the
settings would make now, in ways Terraform is told to ignore (a change it would
apply to every node at once): ``invoke roll`` replaces such nodes one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from swarmforge.nodes import NodeRef

RUNNING = "running"


@dataclass(frozen=True)
class NodeFacts:
    """One node as its target sees it now; None where the target cannot tell."""

    image: str | None = None  # the image it booted from (an AMI id, a local image id)
    state: str | None = None  # the machine's state (aws: running, stopped, ...)
    private_ip: str | None = None  # its address inside the network, the swarm's
    ssh_host: str | None = None  # where to reach it over SSH now
    drift: tuple[str, ...] = ()  # how it differs from what the settings want

    @property
    def reachable(self) -> bool:
        """Whether SSH can reach it at all: a stopped machine cannot answer."""
        return self.state in (None, RUNNING)


def refreshed(refs: Sequence[NodeRef], facts: Mapping[str, NodeFacts],
              say: Callable[[str], None]) -> list[NodeRef]:
    """``refs`` at the addresses their target sees now, in the same order; ``say`` gets a
    line for each node whose address changed, that cannot be reached, or that drifted."""
    return [_refreshed(ref, facts.get(ref.name), say) for ref in refs]


def _refreshed(ref: NodeRef, fact: NodeFacts | None, say: Callable[[str], None]) -> NodeRef:
    if fact is None:
        return ref
    if fact.drift:  # apply leaves it so: said wherever the nodes are read, apply included
        say(f"{ref.name}: {'; '.join(fact.drift)}: `invoke roll` replaces it")
    if not fact.reachable:
        # Its old address is kept for Terraform's sake; the swarm is asked through the
        # managers that run (Cluster.swarm), so no SSH waits on this one.
        say(f"{ref.name}: {fact.state}, so it is not reached over SSH; start it, or "
            f"replace it (`invoke replace-node {ref.name}`)")
        return ref
    live = replace(ref, ssh_host=fact.ssh_host or ref.ssh_host,
                   private_ip=fact.private_ip or ref.private_ip)
    changes = [("address", ref.ssh_host, live.ssh_host)]
    if live.private_ip != live.ssh_host:  # a private worker's one address is said once
        changes.append(("private address", ref.private_ip, live.private_ip))
    for what, old, new in changes:
        if old != new:
            say(f"{ref.name}: {what} changed {old or '(none)'} -> {new} (stopped and started?)")
    return live
