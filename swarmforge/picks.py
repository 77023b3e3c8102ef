"""Which node to replace, and whether replacing it now is safe.

A node can be named as an operator knows it (hostname, node ID or a unique
prefix, IP) or as Terraform does (``swarm_worker[1]``). Replacing it is refused
when it is the only manager, when the other managers would not keep a majority
during the swap, or when the swarm is unhealthy for another reason than the
node itself (a dead node is the common reason to replace one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarmforge.errors import ConfigError, QuorumError, UnhealthyError
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef, address_of, role_of, short_address
from swarmforge.operation import NodeEntry
from swarmforge.settings import Settings
from swarmforge.swarm import Node, assess, dead_nodes, describe_dead, is_sound, member_at


@dataclass(frozen=True)
class Pick:
    """A node chosen for replacement, as Terraform and the swarm know it."""

    address: str  # e.g. null_resource.swarm_worker[1]
    ref: NodeRef
    member: Node | None  # None: it never joined, or its entry is already gone

    @property
    def role(self) -> str:
        return role_of(self.address)

    @property
    def label(self) -> str:
        return self.member.hostname if self.member else self.ref.name

    def as_entry(self) -> NodeEntry:
        return NodeEntry(address=self.address, name=self.ref.name, ip=self.ref.private_ip,
                         ssh_host=self.ref.ssh_host,
                         node_id=self.member.id if self.member else None, hostname=self.label)


def find_node(query: str, resource_type: str, managers: Sequence[NodeRef],
              workers: Sequence[NodeRef], nodes: Sequence[Node]) -> Pick:
    """The node ``query`` names: a hostname, a node ID (or unique prefix), an address
    such as ``swarm_worker[1]`` (with or without the resource type), or an IP."""
    picks = [Pick(address_of(resource_type, ref.role, i), ref, member_at(nodes, ref.private_ip))
             for refs in (managers, workers) for i, ref in enumerate(refs)]
    exact = [p for p in picks if query in _names(p)]
    by_id = [p for p in picks if p.member and len(query) >= 4 and p.member.id.startswith(query)]
    found = exact or by_id
    if len(found) == 1:
        return found[0]
    if not found:
        known = ", ".join(p.label for p in picks)
        raise ConfigError([f"node {query!r} is not in this cluster; its nodes are: {known}"])
    raise ConfigError([f"node {query!r} is ambiguous: it matches "
                       + ", ".join(p.label for p in found)])


def out_of_date(refs: Sequence[NodeRef], facts: Mapping[str, NodeFacts], image: str | None,
                everything: bool = False) -> dict[str, list[str]]:
    """{node name: why a roll replaces it}, in the order of ``refs``: a node on another image
    than ``image`` (the one new nodes boot from; None: nothing to compare with), one that
    drifted from the settings (``facts``, by node name), and with ``everything`` every node
    (with no reason of its own: an empty list)."""
    stale = {}
    for ref in refs:
        fact = facts.get(ref.name, NodeFacts())
        why = list(fact.drift)
        if image is not None and fact.image != image:
            why.insert(0, f"image {fact.image or 'unknown'}, new nodes boot from {image}")
        if why or everything:
            stale[ref.name] = why
    return stale


def _names(pick: Pick) -> set[str]:
    names = {pick.address, short_address(pick.address), pick.ref.name, pick.ref.private_ip, pick.ref.ssh_host}
    if pick.member:
        names |= {pick.member.hostname, pick.member.id}
    return names


def replace_advice(settings: Settings, dead: Sequence[Node], then: str = "") -> str:
    """How to get rid of ``dead`` nodes: the replace-node command for each, one at a time
    (a manager's keeps a majority at every step), then ``then``."""
    flags = f"--cluster {settings.cluster} --target {settings.target}"
    commands = "; then ".join(f"`invoke replace-node {n.hostname} {flags} --yes`" for n in dead)
    text = f"Replace {'it' if len(dead) == 1 else 'them, one at a time'}: {commands}"
    if then:
        return text + f" (it may run while this operation is unfinished); then `{then}` carries on."
    return text + "."


def check_replaceable(picks: Sequence[Pick], nodes: Sequence[Node], managers: int,
                      workers: int, settings: Settings | None = None, then: str = "",
                      tolerate: Sequence[Pick] = ()) -> None:
    """Refuse (QuorumError / UnhealthyError) unless replacing ``picks`` is safe now.

    A swarm that is unhealthy only because of the nodes being replaced is fine:
    a dead node is the common reason to replace one. With ``settings``, a refusal for
    other dead nodes names the command that replaces them (and ``then``, the command that
    carries on the unfinished operation that asked). ``tolerate``: dead nodes that the
    same run replaces next (heal): judged as if gone, but never counted as sound managers.
    """
    leaving = frozenset(p.member.id for p in picks if p.member)
    later = frozenset(p.member.id for p in tolerate if p.member)
    quitting_managers = sum(p.role == "manager" for p in picks)
    others = [n for n in nodes if n.id not in leaving]
    dead = [n for n in dead_nodes(others) if n.id not in later]
    advice = f" {replace_advice(settings, dead, then)}" if dead and settings else ""
    if quitting_managers:
        _check_quorum(picks[0], nodes, others, advice)
    later_managers = sum(p.role == "manager" for p in tolerate)
    health = assess(nodes, managers - quitting_managers - later_managers,
                    workers - (len(picks) - quitting_managers) - (len(tolerate) - later_managers),
                    ignore=leaving | later)
    problems = health.problems
    if problems:
        names = ", ".join(p.label for p in picks)
        if dead:
            raise UnhealthyError(f"refusing to replace {names}: "
                                 + ", ".join(describe_dead(n) for n in dead) + " (dead, and not "
                                 "this replacement's)." + (advice or " Replace it first."))
        raise UnhealthyError(f"refusing to replace {names}: the swarm is not healthy apart from it: "
                             f"{'; '.join(problems)}. Fix or replace those nodes first.")


def _check_quorum(pick: Pick, nodes: Sequence[Node], others: Sequence[Node],
                  advice: str = "") -> None:
    """Majority arithmetic of the swap. The managers that stay sound must be a majority of
    the n there are now. A live manager surges: the twin joins (n + 1, the old one still
    voting: 3 of 4), then the old one goes. A dead one goes first: the sound ones are then
    a majority of n - 1 (2 of 2), and stay one of n while the twin joins (2 of 3)."""
    members = [n for n in nodes if n.role == "manager"]
    if len(members) <= 1:
        raise QuorumError(f"refusing to replace {pick.label}: it is the swarm's only manager, and "
                          "the swarm (its raft state) would go with it. Add managers first: "
                          "`invoke apply --managers 3`.")
    sound = [n for n in others if n.role == "manager" and is_sound(n)]
    if len(sound) <= len(members) // 2:
        raise QuorumError(
            f"refusing to replace manager {pick.label}: of {len(members)} managers only "
            f"{len(sound)} other(s) are reachable, not a majority, so the swarm would lose quorum "
            "during the swap. Bring the unreachable manager(s) back (or replace them first), "
            "then retry." + advice)
