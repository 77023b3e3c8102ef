"""The heal use case: replace the nodes that died, unless so many died at once that the
likelier story is a network partition.

A node is unhealthy when the swarm calls it Down (a manager: unreachable), or when its
host is gone (the target says its machine is not running: an EC2 instance terminated or
stopped). Each is replaced through the replace-node path (``Replacement``): dead managers
first, one at a time (each removed, then its twin joins, with the quorum checks of
picks.py), then the dead workers in one batch. Entries of nodes Terraform no longer
has (an older host's, left Down at an address a fresh host now holds) are only removed.

The brake: more unhealthy nodes at once than ``max_unhealthy_managers`` (default 1) or
``max_unhealthy_workers`` (default 34 % of the workers, at least 1) is refused with the
reason. Nodes that vanish together most often vanished from one manager's view, not from
the world: replacing them would double the cluster the moment the partition heals. The
operator looks, then raises the limit for one run. (replace-node one by one is no way
out: it refuses while another node is dead.)

Each replacement is journalled as replace-node's are, with ``invoke heal`` as the command
that carries it on: a heal killed half-way resumes where it stopped, and then goes on to
whatever else is still unhealthy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmforge.cluster import Cluster
from swarmforge.errors import SwarmError
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef
from swarmforge.operation import Journal, ReplaceNodeRecord, unfinished
from swarmforge.picks import Pick, check_replaceable, find_node
from swarmforge.replacement import Reach, Replacement
from swarmforge.settings import Settings
from swarmforge.swarm import Node, dead_nodes, describe_dead, member_at

OPERATION = "heal"
WORKER_SHARE = 0.34  # of the workers, at most this many unhealthy at once are healed


class PartitionSuspected(SwarmError):
    """More nodes are unhealthy at once than heal replaces without a person looking."""

    exit_code = 5


@dataclass(frozen=True)
class Sick:
    """An unhealthy node, and why it counts as such."""

    pick: Pick
    why: str  # "worker x-worker-1 is down", "machine terminated"


@dataclass(frozen=True)
class Diagnosis:
    sick: tuple[Sick, ...]  # managers first
    stale: tuple[Node, ...]  # Down entries of nodes Terraform no longer has
    managers: int
    workers: int

    @property
    def sick_managers(self) -> list[Sick]:
        return [s for s in self.sick if s.pick.role == "manager"]

    @property
    def sick_workers(self) -> list[Sick]:
        return [s for s in self.sick if s.pick.role == "worker"]

    @property
    def healthy(self) -> bool:
        return not self.sick and not self.stale


@dataclass(frozen=True)
class HealOutcome:
    plan: list[str]
    acted: bool
    healed: list[str]  # hostnames replaced
    removed: list[str]  # stale entries removed
    resumed: str = ""  # the interrupted heal's replacement carried on first, if any


def heal(cluster: Cluster, *, act: bool, rotate: bool = True, drain_timeout: float = 120.0,
         show: Callable[[list[str]], None] = lambda plan: None) -> HealOutcome:
    """Find the unhealthy nodes; refuse past the brake; else show the plan and (``act``)
    replace them. ``show`` gets the plan once the checks passed, before anything is done."""
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION}", cluster.progress.detail):
        journal = operations.journal()
        found = _interrupted_heal(journal, cluster.settings)
        reach = Reach(cluster)
        diagnosis = _diagnosed(reach)
        if found is None:
            check_brake(diagnosis, cluster.settings)
        plan = describe_plan(diagnosis, found)
        show(plan)
        if not act or (diagnosis.healthy and found is None):
            return HealOutcome(plan, acted=False, healed=[], removed=[])
        with cluster.tokens_rotated_if_failed(rotate):
            outcome = _act(reach, journal, found, diagnosis, drain_timeout)
        if rotate and outcome.healed:
            cluster.rotate_tokens(*reach.swarm())
        return HealOutcome(plan, acted=True, healed=outcome.healed, removed=outcome.removed,
                           resumed=outcome.resumed)


# -- what is unhealthy ----------------------------------------------------------


def diagnose(reach: Reach) -> Diagnosis:
    """The nodes Terraform has that are dead or whose host is gone, and the swarm's
    Down entries that belong to no node Terraform has."""
    managers, workers = reach.existing_nodes()
    members = reach.members()  # needs a manager with quorum: none answers, no heal
    facts = reach.cluster.node_facts()
    resource = reach.cluster.target.resource_type
    sick = [Sick(find_node(ref.name, resource, managers, workers, members), why)
            for ref in [*managers, *workers]
            if (why := _why_sick(ref, members, facts))]
    # An entry is a node's when it is the one at that node's address (a ready one first).
    claimed = {m.id for ref in [*managers, *workers]
               if (m := member_at(members, ref.private_ip))}
    stale = tuple(n for n in dead_nodes(members) if n.id not in claimed)
    return Diagnosis(tuple(sick), stale, len(managers), len(workers))


def _diagnosed(reach: Reach) -> Diagnosis:
    """``diagnose``, where a swarm no manager answers for (with a quorum) is the brake's
    case too: a majority of managers lost, or this machine cut off from them."""
    try:
        return diagnose(reach)
    except SwarmError as exc:
        if "no manager answers" not in str(exc):
            raise
        raise PartitionSuspected(
            f"refusing to heal: {str(exc).split('. ', 1)[0]}. Either a majority of the managers "
            "is lost or this machine is cut off from them (a network partition); heal replaces "
            "nodes only through a manager with a quorum. Check the network; a swarm whose "
            "majority is gone for good is recovered from a backup (`invoke restore`).") from exc


def _why_sick(ref: NodeRef, members: Sequence[Node], facts: dict[str, NodeFacts]) -> str:
    """Why the node at ``ref`` is unhealthy; "" when it is not."""
    fact = facts.get(ref.private_ip, NodeFacts())
    if not fact.reachable:
        return f"{ref.role} {ref.name}: machine {fact.state}"
    member = member_at(members, ref.private_ip)
    if member is not None and dead_nodes([member]):
        return describe_dead(member)
    return ""


# -- the brake -------------------------------------------------------------------


def limits(settings: Settings, workers: int) -> tuple[int, int]:
    """(managers, workers) that may be unhealthy at once for heal to act."""
    managers = settings.max_unhealthy_managers
    most_workers = settings.max_unhealthy_workers
    if most_workers is None:
        most_workers = max(1, int(workers * WORKER_SHARE))
    return managers, most_workers


def check_brake(diagnosis: Diagnosis, settings: Settings) -> None:
    """Refuse (PartitionSuspected) when more nodes are unhealthy than the limits allow."""
    most_managers, most_workers = limits(settings, diagnosis.workers)
    over = []
    if len(diagnosis.sick_managers) > most_managers:
        over.append((diagnosis.sick_managers, diagnosis.managers, "managers",
                     "max_unhealthy_managers", most_managers))
    if len(diagnosis.sick_workers) > most_workers:
        over.append((diagnosis.sick_workers, diagnosis.workers, "workers",
                     "max_unhealthy_workers", most_workers))
    if not over:
        return
    said = "; ".join(f"{len(sick)} of {total} {role} unhealthy ("
                     + ", ".join(s.why for s in sick) + f"), more than {name} {most}"
                     for sick, total, role, name, most in over)
    flags = f"--cluster {settings.cluster} --target {settings.target}"
    raise PartitionSuspected(
        f"refusing to heal: {said}. So many at once smells of a network partition rather than "
        "dead nodes, and replacing them would double the cluster once it heals. Check the "
        "network and the hosts; if they are truly gone, raise the limit for one run "
        f"(`invoke heal {flags} " + " ".join(f"--max-unhealthy-{role} {len(sick)}"
                                             for sick, _, role, _, _ in over) + " --yes`).")


# -- the plan --------------------------------------------------------------------


def describe_plan(diagnosis: Diagnosis, found: ReplaceNodeRecord | None) -> list[str]:
    steps = []
    if found is not None:  # its nodes are finished first, not replaced again
        steps.append(f"finish replacing {found.replacement.names} (an interrupted heal)")
        diagnosis = _without(diagnosis, {n.address for n in found.replacement.nodes})
    steps += [f"remove the stale entry of {describe_dead(n)} (Terraform has no such node)"
              for n in diagnosis.stale]
    steps += [f"replace {s.why} (its entry goes first, then its twin joins)"
              for s in diagnosis.sick_managers]
    workers = diagnosis.sick_workers
    if workers:
        steps.append("replace " + ", ".join(s.why for s in workers)
                     + ": drain, remove the entries, fresh hosts join")
    if not steps:
        return ["nothing to heal: every node is healthy"]
    return [f"{i}. {step}" for i, step in enumerate(steps, 1)]


# -- acting ----------------------------------------------------------------------


@dataclass
class _Done:
    healed: list[str]
    removed: list[str]
    resumed: str = ""


def _act(reach: Reach, journal: Journal, found: ReplaceNodeRecord | None,
         diagnosis: Diagnosis, drain_timeout: float) -> _Done:
    done = _Done([], [])
    if found is not None:  # the interrupted heal first; then what is still unhealthy
        others = _without(diagnosis, {n.address for n in found.replacement.nodes}).sick
        _replace(reach, journal, found, [s.pick for s in others], drain_timeout)
        done.resumed = found.replacement.names
        done.healed += [n.hostname for n in found.replacement.nodes]
        reach.state_changed()
        diagnosis = diagnose(reach)
        check_brake(diagnosis, reach.cluster.settings)
    done.removed = _remove_stale(reach, diagnosis.stale)
    for group in _groups(diagnosis):
        later = [s.pick for s in diagnosis.sick if s.pick not in group]
        record = _new_record(reach, group, later)
        journal.begin(record)
        _replace(reach, journal, record, later, drain_timeout)
        done.healed += [p.label for p in group]
        diagnosis = _without(diagnosis, {p.address for p in group})
        reach.state_changed()
    return done


def _without(diagnosis: Diagnosis, addresses: set[str]) -> Diagnosis:
    """``diagnosis`` without the sick nodes at ``addresses`` (and its stale entries: they are
    dealt with before any replacement)."""
    return Diagnosis(tuple(s for s in diagnosis.sick if s.pick.address not in addresses), (),
                     diagnosis.managers, diagnosis.workers)


def _groups(diagnosis: Diagnosis) -> list[list[Pick]]:
    """Each dead manager on its own, then the dead workers together."""
    groups = [[s.pick] for s in diagnosis.sick_managers]
    if diagnosis.sick_workers:
        groups.append([s.pick for s in diagnosis.sick_workers])
    return groups


def _new_record(reach: Reach, group: list[Pick], later: Sequence[Pick]) -> ReplaceNodeRecord:
    """The replacement of ``group``, checked as replace-node checks one (quorum, the rest of
    the swarm healthy), the other unhealthy nodes this heal replaces next left aside."""
    cluster = reach.cluster
    managers, workers = reach.existing_nodes()
    nodes = reach.members()
    # Read again: an earlier group's replacement changed the indices' hosts and the members.
    resource = cluster.target.resource_type
    picks = [find_node(p.ref.name, resource, managers, workers, nodes) for p in group]
    fresh_later = [find_node(p.ref.name, resource, managers, workers, nodes) for p in later]
    check_replaceable(picks, nodes, len(managers), len(workers), cluster.settings,
                      tolerate=fresh_later)
    s = cluster.settings
    return ReplaceNodeRecord(
        summary=f"heal: replace {picks[0].role}(s) " + ", ".join(p.label for p in picks),
        query=picks[0].ref.name, resume=_resume(s),
        replacement=Replacement.record_for(picks, managers, workers, dead=True))


def _replace(reach: Reach, journal: Journal, record: ReplaceNodeRecord, later: Sequence[Pick],
             drain_timeout: float) -> None:
    Replacement(reach.cluster, record.replacement, lambda: journal.save(record),
                drain_timeout=drain_timeout, resume=record.resume, reach=reach,
                tolerate=later).run()
    journal.finish()


def _remove_stale(reach: Reach, stale: Sequence[Node]) -> list[str]:
    """``node rm`` the Down entries no node of Terraform's owns (a manager's is demoted
    first; Docker refuses that if it would cost quorum)."""
    if not stale:
        return []
    swarm, via = reach.swarm()
    for node in stale:
        with reach.cluster.progress.step(f"removing the stale entry of {describe_dead(node)}"):
            swarm.remove(node, via)
    return [n.hostname for n in stale]


def _resume(settings: Settings) -> str:
    return f"invoke {OPERATION} --cluster {settings.cluster} --target {settings.target} --yes"


def _interrupted_heal(journal: Journal, settings: Settings) -> ReplaceNodeRecord | None:
    """The replacement an interrupted heal left in the journal; any other operation there
    is refused (finish it first: its own command says how)."""
    found = journal.load()
    if found is None:
        return None
    if isinstance(found, ReplaceNodeRecord) and found.resume == _resume(settings):
        return found
    raise unfinished(settings.cluster, found)
