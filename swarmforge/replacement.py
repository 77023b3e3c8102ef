"""Swap nodes for fresh ones without losing quorum or a service's tasks.

Workers are replaced in place: drained (their tasks move to other nodes), they
leave the swarm and their entries are removed, then ``terraform apply
-replace`` makes fresh hosts that join with tokens passed in the child's
environment only.

A manager surges: its replacement joins first, as one manager more, in the
twin slot; only then is the old one drained, demoted (leadership moves if it
led), made to leave and removed, and Terraform destroys it. The new one joins
in the old one's index (one ``terraform state mv`` first parks the old one at
the last index, where the final, smaller count removes it), so no state move
is left once the old one is gone. The issue that asked for this named the
other order (demote first); docs/swarm.md has the measurements: demote-first
leaves a 3-manager swarm at 2 of 2 managers, tolerating no failure for the
whole swap, while surge keeps 3 of 4 and still tolerates one. The safer order
wins.

A dead manager is the exception: it cannot vote, so a surge beside it would make
3 managers with one dead 2 of 4, no majority, until the twin votes (and for good
if the twin never does). Its entry goes first (2 of 2, a majority of those
there are), then the twin joins in its index (2 of 3 while it joins, 3 of 3).

Every step is written to the cluster's journal when done; a re-run after a
crash or a kill carries on from the first step not done.

What a run has seen is passed down its steps (``Reach``): Terraform's outputs are
read again only after a Terraform run, and the swarm is asked through the manager
that last answered for as long as it answers.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

from swarmforge.beside import Beside
from swarmforge.cluster import Cluster
from swarmforge.departure import leave_swarm
from swarmforge.errors import (
    CommandError,
    CommandTimeout,
    SwarmError,
    SwarmforgeError,
    interrupted,
)
from swarmforge.nodes import (
    NodeRef,
    address_of,
    index_of,
    is_node,
    join_step_address,
    twin_slot,
)
from swarmforge.operation import ReplacementRecord, utc_now
from swarmforge.picks import Pick, replace_advice
from swarmforge.ssh import SSH
from swarmforge.swarm import (
    RECHECK,
    DeadNodeError,
    Node,
    Swarm,
    dead_nodes,
    is_sound,
    member_at,
)
from swarmforge.terraform import Terraform
from swarmforge.terraform_output import Plan


class Reach:
    """The cluster as this run last saw it, read once and handed from step to step.

    The nodes in Terraform's state are read again only once a Terraform run changed
    them (``state_changed``). The swarm is asked through the manager that last
    answered, as long as it answers: listing the nodes needs a leader and a quorum,
    so each listing is itself the check ``Swarm.active_manager`` makes, and when it
    fails a manager that answers is sought again. Managers on their way out
    (``avoid``) are never asked.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.avoid: frozenset[str] = frozenset()  # SSH hosts of managers being replaced
        self._nodes: tuple[list[NodeRef], list[NodeRef]] | None = None
        self._swarm: Swarm | None = None
        self._via = ""

    def nodes_in_state(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """The managers and workers in Terraform's state, in index order."""
        return self._read(self.cluster.nodes_in_state)

    def existing_nodes(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """As ``nodes_in_state``; SwarmError if the cluster has none yet."""
        return self._read(self.cluster.existing_nodes)

    def _read(self, read: Callable[[], tuple[list[NodeRef], list[NodeRef]]]
              ) -> tuple[list[NodeRef], list[NodeRef]]:
        if self._nodes is None:
            self._nodes = read()
            if self._swarm is not None:  # the managers to fall back on, should ``via`` fail
                self._swarm.manager_hosts = self._reachable_managers().manager_hosts
        return self._nodes

    def state_changed(self) -> None:
        """Terraform changed the nodes: read them again when next asked."""
        self._nodes = None

    def set_aside(self, hosts: Iterable[str]) -> None:
        """The managers at ``hosts`` are on their way out: none of them is asked from now on."""
        self.avoid = frozenset(hosts)
        if self._swarm is not None:
            self._swarm.manager_hosts = [h for h in self._swarm.manager_hosts
                                         if h not in self.avoid]

    def swarm(self) -> tuple[Swarm, str]:
        """The swarm, and the manager (not one being replaced) that answers for it."""
        if self._swarm is None or self._via in self.avoid:
            self._swarm = self._reachable_managers()
            self._via = self.cluster.answering_manager(self._swarm)
        return self._swarm, self._via

    def lost_manager(self) -> str | None:
        """The manager this run reached the swarm through, if it no longer answers as an
        active manager (its Docker died, say): another is sought when next asked."""
        if self._swarm is None or not self._via:
            return None
        try:
            state = self._swarm.member_state(self._via)
            if state.get("LocalNodeState") == "active" and state.get("ControlAvailable"):
                return None
        except CommandError:
            pass
        lost, self._swarm, self._via = self._via, None, ""
        return lost

    def members(self) -> list[Node]:
        """The swarm's nodes, as a manager with a quorum lists them."""
        swarm, via = self.swarm()
        try:
            return swarm.nodes(via)
        except CommandError:
            self._swarm = None  # it stopped answering (down, left, no quorum): find one that does
        swarm, via = self.swarm()
        return swarm.nodes(via)

    def _reachable_managers(self) -> Swarm:
        managers = self.nodes_in_state()[0]
        return self.cluster.swarm([m for m in managers if m.ssh_host not in self.avoid])


class Replacement:
    """One replacement (a manager, or a batch of workers), step by journalled step."""

    def __init__(self, cluster: Cluster, record: ReplacementRecord,
                 save: Callable[[], None], *, drain_timeout: float, resume: str,
                 reach: Reach | None = None, tolerate: Sequence[Pick] = ()) -> None:
        self.cluster = cluster
        self.record = record
        self.save = save  # writes the journal that holds ``record``
        self.drain_timeout = drain_timeout
        self.resume = resume  # the command that carries on after a failure
        self.progress = cluster.progress
        self.reach = reach or Reach(cluster)
        self.reach.set_aside(n.ssh_host for n in record.nodes)
        # Other dead nodes the same run replaces next (heal): no health wait waits for them.
        self.tolerate = tuple(tolerate)
        # What this run saw for itself, which later steps may build on (never carried
        # over from an earlier run: a resumed step checks again in full).
        self._twin_held = False  # the surge's health streak passed, judging every other node
        self._retired_as_planned = False  # the retire applied only the expected removals
        self._ahead: PlanAhead | None = None  # the next Terraform step's plan, under way
        self._moved: list[str] = []  # the tasks (web.3) this run's drain moved off the nodes
        self._leaving_reached: list[threading.Thread] = []  # their connections, being opened

    @classmethod
    def record_for(cls, picks: Sequence[Pick], managers: Sequence[NodeRef],
                   workers: Sequence[NodeRef], *, dead: bool = False) -> ReplacementRecord:
        """What a replacement must remember to resume: the nodes and the cluster's shape.
        ``dead``: the nodes are known to be dead (heal: a host gone may still be listed
        Ready for a few seconds), whatever the swarm says of them yet."""
        role = picks[0].role
        dead = dead or any(p.member is None or dead_nodes([p.member]) for p in picks)
        return ReplacementRecord(
            role=role, nodes=[p.as_entry() for p in picks], managers=len(managers),
            workers=len(workers), slots=[m.slot for m in managers],
            new_slot=twin_slot(picks[0].ref.slot) if role == "manager" else None,
            twin_in_place=role == "manager", leaves_first=role == "manager" and dead)

    # -- plan ---------------------------------------------------------------

    def steps(self) -> list[tuple[str, str, Callable[[], None]]]:
        """(name, what it does, the step) in order, for this record's role."""
        r = self.record
        first = r.nodes[0]
        if r.role == "manager":
            swap = [] if r.twin_in_place else [
                ("swap", f"the new manager takes index {index_of(first.address)} in the "
                         "Terraform state; the old one the last", self._swap)]
            where = ", in its index (the old one moves to the last)" if r.twin_in_place else ""
            surge = [("surge", f"terraform apply: a new manager {self._new_name()} joins "
                               f"{'in place of' if r.leaves_first else 'beside'} "
                               f"{r.names}{where}", self._surge)]
            out = [
                ("drain", f"drain {r.names}: its tasks move to other nodes", self._drain),
                ("demote", f"demote {r.names} (leadership moves if it leads)", self._demote),
                ("leave", f"{r.names} leaves the swarm; its entry is removed", self._leave),
            ]
            return [
                *(out + surge if r.leaves_first else surge + out),
                *swap,
                ("retire", f"terraform apply: the old host {first.name} is destroyed",
                 self._retire),
                ("settle", "check Terraform plans no change, the moved tasks run and the swarm "
                           "is healthy", self._settle),
            ]
        addresses = " ".join(n.address for n in r.nodes)
        return [
            ("drain", f"drain {r.names}: their tasks move to other nodes", self._drain),
            ("leave", f"{r.names}: leave the swarm; remove the entry", self._leave),
            ("replace", f"terraform apply -replace {addresses}: fresh host(s) join as worker(s)",
             self._replace),
            ("settle", "wait until the moved tasks run, the new node(s) are ready and the swarm "
                       "is healthy", self._settle),
        ]

    def describe(self) -> list[str]:
        done = set(self.record.done)
        return [f"{i}. {text}" + ("  (done)" if name in done else "")
                for i, (name, text, _) in enumerate(self.steps(), 1)]

    # -- run ----------------------------------------------------------------

    def run(self) -> None:
        self._reconsider_order()
        try:
            self._run_steps()
        finally:
            if self._ahead is not None:  # no plan outlives the replacement
                self._ahead.wait()
            for thread in self._leaving_reached:  # nor a connection being opened
                thread.join()
        self.reach.set_aside(())  # the old nodes are gone: none is on its way out any more

    def _reconsider_order(self) -> None:
        """A manager that was live when the record was made, dead now (it died during the
        backup, or before a resume), goes first after all: beside it the twin would make
        a raft without a majority. Safe only while no step is done, and so until the
        surge is: in the surge order nothing comes before it."""
        r = self.record
        if r.role != "manager" or r.leaves_first or r.done:
            return
        try:
            members = self.reach.members()
        except SwarmforgeError:  # no manager answers: the first step stops on it, journalled
            return
        member = next((n for n in members if n.id == r.nodes[0].node_id), None)
        if member is None or dead_nodes([member]):
            self.progress.detail(f"{r.names} is dead now: its entry goes before its twin joins")
            r.leaves_first = True
            self.save()

    def _run_steps(self) -> None:
        steps = self.steps()
        for number, (name, text, step) in enumerate(steps, 1):
            if name in self.record.done:
                self.progress.detail(f"{text}: done in an earlier run")
                continue
            try:
                with (self.progress.step(f"[{number}/{len(steps)}] {text}"),
                      self._stops_journalled(f"step {number}/{len(steps)} ({text})")):
                    step()
            except CommandTimeout as exc:  # one line, its "full log:" line last
                exc.resume = (f"It was step {number}/{len(steps)} ({text}); the journal keeps "
                              f"what was done: run `{self.resume}` to carry on.")
                raise
            except DeadNodeError as exc:  # cannot happen by waiting: say which node, what fixes it
                raise StepFailed(f"step {number}/{len(steps)} ({text}) stopped: {exc}. "
                                 + replace_advice(self.cluster.settings, exc.nodes, self.resume),
                                 exc.exit_code) from exc
            except SwarmforgeError as exc:
                raise StepFailed(f"step {number}/{len(steps)} ({text}) failed: {exc}. "
                                 f"The journal keeps what was done; fix the cause and run "
                                 f"`{self.resume}` to carry on.", exc.exit_code) from exc
            self.record.done.append(name)
            self.save()

    @contextlib.contextmanager
    def _stops_journalled(self, where: str) -> Iterator[None]:
        """The journal says where the replacement stopped and why (a failure, Ctrl-C), and
        a Ctrl-C says how to carry on; a step that succeeds clears that."""
        try:
            yield
        except KeyboardInterrupt as exc:
            stop = interrupted(exc, where)
            stop.where = where  # the journal's step, not a step inside it
            stop.resume = f"the journal keeps what was done: run `{self.resume}` to carry on"
            self._note_stop(f"{where}: interrupted (Ctrl-C) at {utc_now()}")
            raise stop from None
        except Exception as exc:
            self._note_stop(f"{where}: failed at {utc_now()}: {exc}")
            raise
        self.record.stopped = None

    def _note_stop(self, why: str) -> None:
        self.record.stopped = why
        with contextlib.suppress(Exception):  # the journal's steps stand; never hide the cause
            self.save()

    # -- the steps ----------------------------------------------------------

    def _drain(self) -> None:
        self._ahead = self._plan_ahead()  # made while the swarm steps from here on run
        leaving = self._members()
        swarm, via = self.reach.swarm()
        # The nodes' own connections, for their `swarm leave`, opened while they drain (a
        # dead node's attempt ends at SSH's connect timeout, and the leave skips it anyway).
        self._leaving_reached = swarm.connect_ahead(n.ssh_host for n in self.record.nodes)
        self._moved = replicated_tasks_on(swarm, via, leaving)
        for node in leaving:
            swarm.drain(node, via)
        for node in leaving:
            swarm.wait_drained(node, via, self.drain_timeout)

    def _demote(self) -> None:
        leaving = self._members()  # listed by a manager with a quorum; Docker checks again
        swarm, via = self.reach.swarm()
        for node in leaving:
            if node.role == "manager":
                swarm.demote(node, via)

    def _leave(self) -> None:
        swarm, via = self.reach.swarm()
        for entry in self.record.nodes:
            problem = leave_swarm(SSH(swarm.ssh.profile, attempts=1), entry.ssh_host)
            if problem:  # a dead node cannot leave; its entry is removed all the same
                self.progress.detail(f"{entry.hostname} could not leave by itself "
                                     f"({problem}): removing its entry")
        leaving = self._members()
        swarm, via = self.reach.swarm()
        for node in leaving:
            swarm.remove(node, via)
        for entry in self.record.nodes:
            swarm.ssh.forget(entry.ssh_host)

    def _replace(self) -> None:
        r = self.record
        addresses = [n.address for n in r.nodes]
        self._clear_strays([n.ip for n in r.nodes])
        self._apply(addresses, replace=addresses, count=r.managers, slots=r.slots)

    def _surge(self) -> None:
        r = self.record
        managers, _ = self.reach.nodes_in_state()
        twin = next((m for m in managers if m.name == self._new_name()), None)
        if twin is not None:  # an earlier run got as far as creating it
            member = member_at(self.reach.members(), twin.private_ip)
            if member and is_sound(member) and member.role == "manager":
                self.progress.detail(f"{twin.name} joined in an earlier run")
                return
            self._clear_strays([twin.private_ip])
        remake = self._park() if r.twin_in_place else [self._address(r.managers)]
        self._apply(remake, replace=(), count=r.managers + 1, slots=self._surged_slots())
        try:
            self._wait_healthy()
        except DeadNodeError as exc:
            self._carry_on_past(exc)
        else:
            self._twin_held = True

    def _park(self) -> list[str]:
        """The old manager moves to the last index (once), where the twin does not go and
        the final count removes it; the twin then joins in its index. Returns that index's
        address once the old manager is parked: only the twin can be there (a failed join
        leaves it tainted, to be made anew), the one node the surge may remove. Should the
        old manager still be at its index, nothing: the plan would replace it, and is
        refused."""
        r = self.record
        tf = self.cluster.terraform()
        old, last = r.nodes[0].address, self._address(r.managers)
        names = tf.node_names()
        if names.get(old) == r.nodes[0].name and last not in names:
            tf.move(old, last)  # the outputs keep the old order until the apply: nothing to read
            names[last] = names.pop(old)
        return [old] if names.get(last) == r.nodes[0].name else []

    def _swap(self) -> None:
        """(Records journalled before twins joined in place, whose twin joined last.) The
        new manager takes the old one's index, the old one the last index, where the next
        step's smaller count removes it: a plain apply, so that its destroy-time steps run
        and no other node's swarm step is touched (a -target destroy of one instance also
        destroys every step that reads the resource: all of them). Idempotent: it looks
        where the new manager's name is before moving anything."""
        r = self.record
        tf = self.cluster.terraform()
        old, last, parked = (r.nodes[0].address, self._address(r.managers),
                             self._address(PARKED_INDEX))
        new_name = self._new_name()
        names = tf.node_names()  # read once: each move below is made to this copy too

        def move(source: str, destination: str) -> None:
            tf.move(source, destination)
            names[destination] = names.pop(source)

        if names.get(old) != new_name:  # else an earlier run got this far
            if old in names and parked not in names:
                move(old, parked)
            if names.get(last) == new_name:
                move(last, old)
        if parked in names:
            move(parked, last)

    def _retire(self) -> None:
        """Apply the cluster as it is to be: the old manager, now last, goes with its step."""
        r = self.record
        expected = {self._address(r.managers), join_step_address(r.nodes[0].name)}
        plan = self._planned(self._final_variables(), ())
        unexpected = [c.address for c in plan.removals() if c.address not in expected]
        if unexpected:
            raise SwarmError("refusing to apply: retiring the old manager would also remove "
                             + ", ".join(unexpected))
        self.cluster.apply_terraform(self._final_variables, {})
        self.reach.state_changed()
        # Only the expected removals, applied: planning again would find nothing to do.
        self._retired_as_planned = all(c.address in expected and c.action == "delete"
                                       for c in plan.changes)

    def _settle(self) -> None:
        """The last check. A manager's, right after this run's surge and retire, rests on
        what they checked: the retire's plan held the old host's removal and nothing
        else, so Terraform is not asked again; and the surge's two healthy reads judged
        the very nodes judged here, so one read (the same checks: one leader, every
        manager Leader/Reachable, every node Ready, the counts) says they still hold now
        that the old manager is gone. A settle resumed in another run checks in full."""
        if self.record.role == "manager" and not self._retired_as_planned:
            plan = self.cluster.terraform().plan(self._final_variables(), {})
            if not plan.empty:
                listed = ", ".join(f"{c.address} ({c.action})" for c in plan.changes)
                raise SwarmError(f"after the swap Terraform still plans changes: {listed}")
        swarm, via = self.reach.swarm()
        wait_running(swarm, via, self._moved, self.drain_timeout)
        self._wait_healthy(streak=1 if self._twin_held else 2)

    # -- helpers ------------------------------------------------------------

    def _apply(self, addresses: list[str], *, replace: Sequence[str], count: int,
               slots: list[int]) -> None:
        """Apply the cluster with ``count`` managers in ``slots`` (and ``replace`` made anew),
        once its plan is known to remove no node but ``addresses``; the join tokens are
        read for it only then. New nodes join through the manager that answered: should it
        die meanwhile, their joins fail, and the apply runs once more through another (a
        failed join is tainted, so Terraform makes it again)."""
        try:
            self._apply_once(addresses, replace=replace, count=count, slots=slots)
        except CommandError:
            lost = self.reach.lost_manager()
            if lost is None:
                raise
            self.reach.state_changed()
            self.progress.detail(f"{lost} stopped answering for the swarm while nodes joined "
                                 "through it: once more, through another manager")
            self._apply_once(addresses, replace=replace, count=count, slots=slots)

    def _apply_once(self, addresses: list[str], *, replace: Sequence[str], count: int,
                    slots: list[int]) -> None:
        r = self.record
        variables = self.cluster.variables(managers=count, workers=r.workers, slots=slots)
        # No -target: the whole configuration is applied, so nothing the new node
        # needs (its swarm step, a rule) is left out; any other node removal stops it.
        plan = self._planned(variables, replace)
        unexpected = [c for c in plan.removals() if is_node(c.address) and c.address not in addresses]
        if unexpected:
            raise SwarmError("refusing to apply: Terraform would also remove "
                             + ", ".join(c.address for c in unexpected))
        swarm, via = self.reach.swarm()
        secrets = self.cluster.secrets(swarm, via, self.reach.nodes_in_state()[0])
        # The health wait that follows asks another manager too: connected while Terraform runs.
        with swarm.connected_ahead(h for h in swarm.manager_hosts if h != via):
            self.cluster.apply_terraform(
                lambda: self.cluster.variables(managers=count, workers=r.workers, slots=slots),
                secrets, replace=replace)
        self.reach.state_changed()

    def _planned(self, variables: dict[str, str], replace: Sequence[str]) -> Plan:
        """Terraform's plan for ``variables``: the one made beside the swarm steps before,
        if it was made for these, else made now. Planned without the tokens: they feed
        the nodes' swarm steps only, so Terraform plans the same actions."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            if ahead.made_for(variables, replace):
                return ahead.plan()
            ahead.wait()  # one Terraform at a time on the state
        return self.cluster.terraform().plan(variables, {}, replace=replace)

    def _plan_ahead(self) -> PlanAhead | None:
        """The plan of the Terraform step that follows the swarm steps about to run, begun
        now: they change neither Terraform's state nor its config. (In a record of the
        old layout the swap comes between, and changes the state.)"""
        r = self.record
        tf = self.cluster.terraform()
        if r.role == "worker":
            addresses = [n.address for n in r.nodes]
            return PlanAhead(tf, self.cluster.variables(managers=r.managers, workers=r.workers,
                                                         slots=r.slots), addresses)
        if r.twin_in_place and not r.leaves_first:  # else the surge, after a state move, is next
            return PlanAhead(tf, self._final_variables(), ())
        return None

    def _members(self) -> list[Node]:
        """The swarm entries of the nodes being replaced that are still there."""
        ids = {n.node_id for n in self.record.nodes}
        return [n for n in self.reach.members() if n.id in ids]

    def _clear_strays(self, ips: Sequence[str]) -> None:
        """Entries at these addresses left by an interrupted earlier attempt."""
        strays = [n for n in self.reach.members() if n.address in ips]
        swarm, via = self.reach.swarm()
        for node in strays:
            self.progress.detail(f"removing {node.hostname} ({node.id[:12]}), left by an "
                                 "interrupted earlier attempt")
            swarm.remove(node, via)

    def _wait_healthy(self, streak: int = 2) -> None:
        """Wait for the swarm to be healthy, the nodes on their way out left aside: judged
        without them (by ID, whether still listed or not), the swarm has the cluster's
        counts both while a manager's twin runs beside it and after it is gone."""
        swarm, _ = self.reach.swarm()
        leaving = frozenset(n.node_id for n in self.record.nodes if n.node_id)
        later = frozenset(p.member.id for p in self.tolerate if p.member)
        later_managers = sum(p.role == "manager" for p in self.tolerate)
        swarm.wait_healthy(self.record.managers - later_managers,
                           self.record.workers - (len(self.tolerate) - later_managers),
                           self.cluster.settings.health_timeout, ignore=leaving | later,
                           streak=streak,
                           on_wait=lambda h: self.progress.detail("waiting: " + "; ".join(h.problems)))

    def _carry_on_past(self, dead: DeadNodeError) -> None:
        """Another node died while the twin joined. Stopping here would leave the swap half
        done, where replacing the dead node cannot start (the Terraform indices are in
        flux); so, if the twin is in and a majority of the managers (the twin counted) is
        sound, this replacement goes on to its last health check, and stops there for the
        dead node. (Docker itself still refuses the demote should it cost quorum.)"""
        nodes = self.reach.members()
        managers = [n for n in nodes if n.role == "manager"]
        sound = [n for n in managers if is_sound(n)]
        in_state = self.reach.nodes_in_state()[0]
        ref = next((m for m in in_state if m.name == self._new_name()), None)
        twin = member_at(nodes, ref.private_ip) if ref else None
        if not (twin and twin.role == "manager" and is_sound(twin)) or len(sound) <= len(managers) // 2:
            raise dead
        self.progress.detail(f"{dead.nodes[0].hostname} died meanwhile; {len(sound)} of "
                             f"{len(managers)} managers are sound: this replacement goes on "
                             "and stops at its last health check")

    def _surged_slots(self) -> list[int]:
        """The managers' slots while the replacement runs beside the old manager: the twin
        in the old one's index and the old one last, or (a record of the old layout) the
        twin last."""
        r = self.record
        assert r.new_slot is not None, "a manager's replacement has a twin slot"
        if r.twin_in_place:
            return [*self._final_slots(), r.slots[index_of(r.nodes[0].address)]]
        return [*r.slots, r.new_slot]

    def _final_slots(self) -> list[int]:
        """The managers' slots once the replacement took the old manager's index."""
        r = self.record
        index = index_of(r.nodes[0].address)
        return [r.new_slot if i == index and r.new_slot is not None else s
                for i, s in enumerate(r.slots)]

    def _final_variables(self) -> dict[str, str]:
        """The cluster's variables once a manager's replacement took its index."""
        r = self.record
        return self.cluster.variables(managers=r.managers, workers=r.workers,
                                      slots=self._final_slots())

    def _new_name(self) -> str:
        return f"{self.cluster.settings.cluster}-manager-{self.record.new_slot}"

    def _address(self, index: int) -> str:
        return address_of(self.cluster.target.resource_type, "manager", index)


def replicated_tasks_on(swarm: Swarm, via: str, nodes: Sequence[Node]) -> list[str]:
    """The replicated tasks running on ``nodes``, by name (``web.3``: service and slot; a
    drain gives each slot a new task on another node). Global tasks (``name.<node ID>``)
    are left out: they run on every node and move nowhere."""
    if not nodes:
        return []
    out = swarm.manage(via, f"docker node ps {' '.join(n.id for n in nodes)} "
                            "--filter desired-state=running --format '{{.Name}}'",
                       "the tasks on " + ", ".join(n.hostname for n in nodes))
    return sorted({name for name in out.split() if name.rpartition(".")[2].isdigit()})


def wait_running(swarm: Swarm, via: str, tasks: Sequence[str], timeout: float) -> None:
    """Wait (bounded) until each of ``tasks`` (``web.3``) runs again, wherever it was put."""
    if not tasks:
        return
    services = sorted({t.rpartition(".")[0] for t in tasks})
    command = (f"docker service ps {' '.join(services)} --filter desired-state=running "
               "--format '{{.Name}} {{.CurrentState}}'")
    deadline = time.monotonic() + timeout
    while True:
        out = swarm.manage(via, command, "the moved tasks", deadline)
        states = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
        waiting = [f"{t} ({states.get(t, 'not scheduled').split(' ')[0].lower()})"
                   for t in tasks if not states.get(t, "").startswith("Running")]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise SwarmError(f"task(s) moved off the replaced node(s) are not running after "
                             f"{timeout:.0f}s: {', '.join(waiting)}: the other nodes may lack "
                             "room or the image")
        time.sleep(RECHECK)


class PlanAhead:
    """A Terraform plan made in a thread of its own (it only waits for Terraform) while the
    main thread runs the swarm steps before the Terraform step that needs it."""

    def __init__(self, tf: Terraform, variables: dict[str, str], replace: Sequence[str]) -> None:
        self.variables = variables
        self.replace = tuple(replace)
        self._plan = Beside(functools.partial(tf.plan, variables, {}, replace=self.replace))

    def made_for(self, variables: dict[str, str], replace: Sequence[str]) -> bool:
        return (variables, tuple(replace)) == (self.variables, self.replace)

    def wait(self) -> None:
        self._plan.wait()

    def plan(self) -> Plan:
        """The plan; what making it raised is raised here, by the step that needs it."""
        return self._plan.result()


#: Where the old manager waits during the swap: beyond any count (managers are 8 at most).
PARKED_INDEX = 99


class StepFailed(SwarmforgeError):
    """A step of a replacement failed; the message says which and how to carry on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
