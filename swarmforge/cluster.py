"""The cluster use cases: apply (two phases), status, destroy.

apply, as the recipe it comes from, in two Terraform runs:
  1. only if no swarm exists: manager 0 alone, with swarm_init=true;
  2. tokens read over SSH from a healthy manager, handed to Terraform as
     TF_VAR_* in its environment only; then everything else joins.
A re-run finds the swarm, skips phase 1 and completes whatever is missing: it
plans without the tokens, applies the network's changes first and reaches the
swarm only for what changes nodes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from swarmforge.apply_guards import (
    changes_before_the_swarm,
    nodes_to_remake,
    refuse_removals,
    swarm_only_config,
)
from swarmforge.apply_plan import apply_plan
from swarmforge.autolock import StoredKeyUnlocker, key_command, turn_on
from swarmforge.beside import Beside
from swarmforge.errors import CommandError, SwarmError, SwarmforgeError
from swarmforge.node_facts import NodeFacts, refreshed
from swarmforge.nodes import (
    NodeRef,
    manager_slots,
    ref_for,
    refs_from_output,
)
from swarmforge.operation import BusyError
from swarmforge.picks import replace_advice
from swarmforge.private_files import private_dirs
from swarmforge.progress import Progress
from swarmforge.scale_in import (
    leave_beyond,
    refuse_other_removals,
    refuse_unconfirmed,
    shrinking,
)
from swarmforge.settings import Settings
from swarmforge.ssh import SSH, SshProfile
from swarmforge.state_file import state_outputs
from swarmforge.swarm import DeadNodeError, Health, Node, Swarm
from swarmforge.swarm_lock import SwarmLock
from swarmforge.targets import target_for
from swarmforge.targets.base import Target
from swarmforge.terraform import Terraform
from swarmforge.workspace import initialised_terraform


@dataclass(frozen=True)
class ApplyReport:
    bootstrapped: bool  # phase 1 ran: the swarm was created
    changed: bool  # Terraform changed something
    health: Health
    autolock: str = ""  # with --autolock: where the unlock key is kept


class Cluster:
    """One cluster on one target."""

    def __init__(self, settings: Settings, progress: Progress | None = None,
                 target: Target | None = None) -> None:
        self.settings = settings
        self.progress = progress or Progress()
        self.target = target or target_for(settings)
        self._terraform: Terraform | None = None
        self._profile: SshProfile | None = None
        self._slots: list[int] = []  # the managers' slots, as the state last showed them
        self._refs: list[NodeRef] | None = None  # the nodes, as the state last showed them
        self._joined: list[str] = []  # the nodes whose swarm step exists, as the state showed
        self._pins: dict[str, str] = {}  # {node name: pinned host key}, for the swarm steps
        self._unpinned: set[str] = set()  # nodes being made anew: their old pin is no use
        self._destroying = False  # the target asks nothing of what may be gone
        self._facts: dict[str, NodeFacts] = {}  # {node name: as the target saw it last}
        self._said: set[str] = set()  # what was said of the nodes' facts: once per command
        self._handed_out: Swarm | None = None  # whose join tokens left us since the last rotation
        self._unchanged: HealthRead | None = None  # a re-apply that changed nothing: its read
        self._unlocker: StoredKeyUnlocker | None = None  # autolock's keys, read when needed

    @property
    def parallelism(self) -> int:
        """How many nodes Terraform makes at once: the setting, else the target's own."""
        return self.settings.parallelism or self.target.default_parallelism

    # -- apply --------------------------------------------------------------

    def apply(self, rotate: bool = True,
              confirm: Callable[[list[str]], bool] = lambda plan: True,
              autolock: bool = False, may_remove: bool = False) -> ApplyReport | None:
        """Create the swarm, or converge it on the settings: the steps an operator would take.

        ``confirm`` gets the plan once the target's checks passed, before Terraform runs;
        None when it declines. ``autolock``: turned on once the swarm is healthy, its key
        put in the target's secret store (autolock.py). ``may_remove``: the operator confirmed
        that nodes beyond the counts may go (scale-in: they leave the swarm first)."""
        operations = self.target.operation_store()
        self._unchanged = None
        with operations.exclusive("invoke apply", self.progress.detail):
            operations.journal().refuse_if_unfinished(self.settings.cluster)
            self._prepare_target()
            self.target.check_capacity(self.progress)
            if not confirm(apply_plan(self.settings, self.target)):
                return None
            tf = self._prepare()
            managers, workers = self._nodes_in_state(tf)
            wanted = (self.settings.managers, self.settings.workers)
            if shrinking(wanted, managers, workers):
                if not may_remove:
                    refuse_unconfirmed(wanted, managers, workers)
                self._scale_in(tf, managers, workers)
                managers, workers = self._nodes_in_state(tf)
            bootstrapped = self._needs_bootstrap(managers, self._joined)
            if bootstrapped:
                self._phase_one()
                managers, workers = self._nodes_in_state(tf)
            swarm = self.swarm(managers)
            if not bootstrapped:
                swarm.unlock_locked()  # a manager restarted since: locked, with autolock on
            with self.tokens_rotated_if_failed(rotate):
                if bootstrapped:
                    changed = self._join_the_new_swarm(swarm, managers)
                else:
                    changed = self._phase_two(tf, swarm, managers, workers, rotate)
                read = self._unchanged or self._wait_healthy(swarm, rotate)
            if rotate and not read.rotated:
                self.rotate_tokens(swarm, read.via or None)
            kept = self._turn_on_autolock(swarm, read.via) if autolock else ""
            if not bootstrapped:  # a rotation's previous key, once no manager needs it
                self.unlocker(swarm).forget_previous_if_settled(swarm.manager_hosts)
            return ApplyReport(bootstrapped, changed or bootstrapped, read.health, kept)

    def _turn_on_autolock(self, swarm: Swarm, via: str) -> str:
        """Autolock on, its key in the target's store; where that is."""
        unlocker = self.unlocker(swarm)
        with self.progress.step("swarm autolock: on, its unlock key kept in "
                                f"{unlocker.store.where}"):
            turn_on(unlocker, via or self.answering_manager(swarm))
        return unlocker.store.where

    def _scale_in(self, tf: Terraform, managers: list[NodeRef], workers: list[NodeRef]) -> None:
        """Fewer nodes than exist: those beyond the counts leave the swarm first, the graceful
        way (scale_in.py), then Terraform destroys them, its plan checked to remove nothing
        else. Nothing joins, so no join token is read."""
        wanted = (self.settings.managers, self.settings.workers)
        swarm = self.swarm(managers[:wanted[0]])  # asked only through managers that stay
        leave_beyond(swarm, self.answering_manager(swarm), managers, workers, wanted,
                     self.progress)
        plan = tf.plan(self._settings_variables(), {})
        refuse_other_removals(plan, self.target.resource_type, wanted, managers, workers)
        gone = len(managers) - wanted[0] + len(workers) - wanted[1]
        with self.progress.step(f"scale-in: terraform destroys {gone} node(s)"):
            self.apply_terraform(self._settings_variables, {})

    def _wait_healthy(self, swarm: Swarm, rotate: bool) -> HealthRead:
        """The streak of healthy polls; with ``rotate``, the join tokens are rotated once the
        first poll is healthy, through the manager that answered, while the streak runs."""
        rotated: list[str] = []

        def rotate_now(via: str) -> None:
            swarm.rotate_tokens(via)
            self._handed_out = None
            rotated.append(via)
            self.progress.detail(f"join tokens rotated through {via}, as the swarm is healthy")

        with self.progress.step("waiting for the swarm to be healthy"):
            try:
                health = swarm.wait_healthy(
                    self.settings.managers, self.settings.workers, self.settings.health_timeout,
                    on_wait=lambda h: self.progress.detail("waiting: " + "; ".join(h.problems)),
                    on_healthy=rotate_now if rotate else None)
            except DeadNodeError as exc:  # an apply does not replace nodes: say what does
                s = self.settings
                heal = (f"`invoke heal --cluster {s.cluster} --target {s.target} --yes` replaces "
                        "dead nodes (or `invoke apply --heal`, which heals first)")
                raise DeadNodeError(exc.nodes, f"{heal}; or one by one: "
                                    + replace_advice(s, exc.nodes)) from exc
        return HealthRead(health, "", bool(rotated))

    def rotate_tokens(self, swarm: Swarm | None = None, via: str | None = None) -> None:
        """New join tokens, so that the ones that travelled (env, nodes) are worth nothing.

        ``swarm`` defaults to the one reached through the managers in the state now; ``via``,
        a manager that just answered for it (another is sought if it no longer does)."""
        swarm = swarm or self.swarm(self.nodes_in_state()[0])
        with self.progress.step("rotating the join tokens"):
            try:
                swarm.rotate_tokens(via or self.answering_manager(swarm))
            except CommandError:
                if via is None:
                    raise
                swarm.rotate_tokens(self.answering_manager(swarm))
        self._handed_out = None

    @contextlib.contextmanager
    def tokens_rotated_if_failed(self, rotate: bool = True) -> Iterator[None]:
        """Rotate the join tokens if the block fails (Ctrl-C included) once they were read
        for Terraform: they went to a child's environment and towards the nodes, and no
        success will rotate them now. ``rotate`` False (--no-rotate) keeps them, as asked.
        A rotation that cannot run is said in one line; the block's own error goes on."""
        try:
            yield
        except BaseException:
            if rotate and self._handed_out is not None:
                self._rotate_after_failure(self._handed_out)
            raise

    def _rotate_after_failure(self, swarm: Swarm) -> None:
        self.progress.say("==> rotating the join tokens: they left this process for a run "
                          "that failed")
        try:
            swarm.rotate_tokens(self.answering_manager(swarm))
        except SwarmforgeError as exc:
            reason = (str(exc).splitlines() or [""])[0].split(". ", 1)[0]
            self.progress.detail(
                f"could not rotate the join tokens ({reason}); once a manager answers, run "
                "`docker swarm join-token --rotate -q worker >/dev/null && docker swarm "
                "join-token --rotate -q manager >/dev/null` on it")
        else:
            self._handed_out = None

    def _needs_bootstrap(self, managers: list[NodeRef], joined: list[str]) -> bool:
        """No swarm yet: no node at all, or nodes of which only the first manager's swarm
        step exists, and that manager is not in a swarm (its init failed or never ran).

        Once any other node's step exists, the swarm was formed: phase 1 never runs
        again, so an unreachable swarm can never lead to a second `swarm init`.
        """
        if not managers:
            return True
        if any(name != managers[0].name for name in joined):
            return False
        try:
            state = self.swarm(managers).member_state(managers[0].ssh_host)
        except CommandError:
            return True  # phase 1 says what is wrong with manager 0 (or makes it anew)
        # Locked (autolock, its Docker restarted): a swarm exists, and is never made again.
        return state.get("LocalNodeState") not in ("active", "locked")

    def _phase_one(self) -> None:
        s = self.settings
        with (self.progress.step(f"phase 1: {s.managers} manager(s) and {s.workers} worker(s); "
                                 "the first manager runs docker swarm init"),
              self._reaching_ahead_for_the_first_manager() as on_start):
            self.apply_terraform(lambda: self._settings_variables(swarm_init=True), {},
                                 on_start=on_start)

    @contextlib.contextmanager
    def _reaching_ahead_for_the_first_manager(self) -> Iterator[Callable[[str], None] | None]:
        """Where the target knows the first manager's SSH address before it exists, its
        shared connection is opened as Terraform begins its swarm step (its host is up
        then): while it inits, not after, when the join tokens are read from it."""
        slot = (self._slots or [0])[0]
        host = self.target.ssh_host_ahead("manager", slot)
        if host is None or self._profile is None:
            yield None
            return
        step = f'null_resource.swarm_join["{self.settings.cluster}-manager-{slot}"]'
        swarm = Swarm(SSH(self._profile), [host])
        opened: list[threading.Thread] = []

        def on_start(address: str) -> None:
            if address == step and not opened:
                opened.extend(swarm.connect_ahead([host]))

        try:
            yield on_start
        finally:
            for thread in opened:
                thread.join()

    def _join_the_new_swarm(self, swarm: Swarm, managers: list[NodeRef]) -> bool:
        """Phase 2 right after phase 1 made every node in this run: with the same counts
        and slots, only the swarm steps can change, so no plan is needed to guard nodes, and
        the state phase 1 wrote seconds ago needs no refresh. The tokens are read from the
        manager that has just made the swarm: only a manager with a leader gives them, which
        is what asking it whether it is one would prove."""
        via = managers[0].ssh_host
        secrets = self.secrets(swarm, via, managers)
        swarm.answered_by(via)
        others = self.settings.managers + self.settings.workers - 1
        # The other managers' connections are opened while Terraform joins them, not in the
        # busy second after the joins, when the health wait asks one of them.
        with (swarm.connected_ahead(h for h in swarm.manager_hosts if h != via),
              self.progress.step(f"phase 2: {others} node(s) join through "
                                 f"{secrets['swarm_manager_ip']}")):
            self.apply_terraform(self._settings_variables, secrets, refresh=False)
        return True

    def _phase_two(self, tf: Terraform, swarm: Swarm, managers: list[NodeRef],
                   workers: list[NodeRef], rotate: bool) -> bool:
        """Planned without the tokens (they feed provisioners only, so Terraform plans the
        same actions); the network changes are applied before the swarm is reached, so a
        new allowed_ssh_cidrs lets the operator in first; the tokens are read only if nodes
        or their swarm steps change. Where the config has no network to change, the swarm's
        health is read (and, if healthy, the tokens rotated) while Terraform plans; if
        nothing is to change, that read is apply's."""
        variables = self._settings_variables()
        via = functools.cache(lambda: self.answering_manager(swarm))  # asked once, if at all
        with self.progress.step("phase 2: planning the nodes' swarm steps"):
            beside = (health_beside(swarm, self.settings, rotate)
                      if swarm_only_config(self.target.config_dir) else None)
            plan = tf.plan(variables, {})
            # Before anything else reaches the swarm: the tokens it rotates are read after.
            read = beside.result() if beside else None
            remake = nodes_to_remake(plan, swarm, via, managers, workers,
                                     self.target.resource_type, self.progress.detail)
            if remake:
                plan = tf.plan(variables, {}, replace=remake)
            refuse_removals(plan, remake)
        first = changes_before_the_swarm(plan)
        if not first and not plan.swarm_changes():
            self.progress.detail("nothing to change: every node exists and has joined")
            self._unchanged = self._healthy_as_read(
                read if beside else _read_health(swarm, self.settings.managers,
                                                 self.settings.workers, rotate))
            return False
        if first:
            with self.progress.step(f"phase 2: {len(first)} network change(s), before the swarm "
                                    "is reached"):
                tf.apply(variables, {}, targets=first, parallelism=self.parallelism)
        if not plan.swarm_changes():
            return True
        secrets = self.secrets(swarm, via(), managers)
        with self.progress.step(f"phase 2: {len(plan.changes) - len(first)} change(s), joining "
                                f"through {secrets['swarm_manager_ip']}"):
            self.apply_terraform(self._settings_variables, secrets, replace=remake)
        return True

    def _healthy_as_read(self, read: HealthRead | None) -> HealthRead | None:
        """A cluster nothing was done to is as healthy as one read says: the same checks as
        every poll of a wait (one leader, every manager leader or reachable, every node
        ready, the counts), by a manager with quorum. Not healthy: None, and apply waits."""
        if read is None or not read.health.healthy:
            return None
        self.progress.detail(f"healthy, as {read.via} answered for the swarm"
                             + ("; join tokens rotated through it" if read.rotated else ""))
        return read

    # -- status and destroy -------------------------------------------------

    def status(self, managers: int | None = None, workers: int | None = None) -> Health:
        """The swarm's nodes and health, judged against the counts given or, for a count
        not given, against the nodes Terraform manages.

        It reads only (no lock: it may run beside an apply): the nodes from the state file,
        without Terraform or its workspace, reached with the SSH files the last apply left."""
        in_state, workers_in_state = self._nodes_as_read()
        wanted = (len(in_state) if managers is None else managers,
                  len(workers_in_state) if workers is None else workers)
        swarm = self.swarm(in_state)
        swarm.unlock_locked()  # a manager restarted locked (autolock): unlocked, then read
        health = swarm.health(*wanted)
        # Not healthy: a locked manager with no key stored is named (or one locked since).
        if not health.healthy and swarm.unlock_locked(always=True):
            return swarm.health(*wanted)
        return health

    def nodes_as_read(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """The managers and workers as status reads them (no lock, no Terraform), and SSH
        ready to reach them: for `invoke context` and `invoke ssh`."""
        return self._nodes_as_read()

    def _nodes_as_read(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """The nodes in the state, at the addresses the target sees now; writes nothing
        unless this machine never reached the cluster (then as an apply prepares it)."""
        outputs = state_outputs(self.settings)
        if not refs_from_output(outputs.get("managers")):
            held = self.target.operation_store().holder()
            if held:  # the first apply, say, before Terraform wrote the nodes to the state
                raise BusyError(f"cluster {self.settings.cluster!r} is being changed and has "
                                f"no nodes yet: {held}")
            raise SwarmError(f"cluster {self.settings.cluster!r} has no nodes; "
                             "run `invoke apply` to create it")
        profile = self.target.ssh_profile()
        if profile is None:
            return self.existing_nodes()
        profile.control_ready()  # in the runtime dir (gone after a reboot), not the state
        self._profile = profile
        return self._take_nodes(outputs, live=True)

    def destroy(self) -> bool:
        """Destroy every node and what the target made; False if there was nothing."""
        if not self.target.exists():
            return False
        with self.target.operation_store().exclusive("invoke destroy", self.progress.detail):
            return self._destroy()

    def _destroy(self) -> bool:
        self._destroying = True
        tf = self._prepare()
        managers, workers = self._nodes_in_state(tf, pin=False)  # nothing is reached over SSH
        with self.progress.step(f"destroying {len(managers)} manager(s) and {len(workers)} worker(s)"):
            # A destroy removes all the state holds, whatever the counts; but the manager
            # count must pass its validation even when phase 1 failed before any output.
            tf.apply(self._variables(swarm_init=False, managers=len(managers) or 1,
                                     workers=len(workers)),
                     {}, destroy=True, parallelism=self.parallelism)
        with self.progress.step(f"removing what the {self.target.name} target made"):
            self.target.teardown()
            self.target.operation_store().journal().finish()  # nothing is left to resume
            shutil.rmtree(self.settings.cluster_dir, ignore_errors=True)
        return True

    # -- shared -------------------------------------------------------------

    def _prepare_target(self) -> SshProfile:
        """The target's own checks and preparation (once): before anything is planned."""
        if self._profile is None:
            private_dirs(self.settings.cluster_dir)
            self._profile = self.target.prepare(destroying=self._destroying)
        return self._profile

    def _prepare(self) -> Terraform:
        if self._terraform:
            return self._terraform
        with self.progress.step(f"preparing cluster {self.settings.cluster!r} "
                                f"on the {self.target.name} target"):
            self._prepare_target()
            self._terraform = initialised_terraform(
                self.settings, self.target.config_dir, self.target.mirrored_providers,
                self.progress.detail)
        return self._terraform

    def _settings_variables(self, swarm_init: bool = False) -> dict[str, str]:
        """The variables of the cluster as the settings want it (apply's two phases)."""
        return self._variables(swarm_init=swarm_init, managers=self.settings.managers,
                               workers=self.settings.workers)

    def _variables(self, *, swarm_init: bool, managers: int, workers: int,
                   slots: list[int] | None = None) -> dict[str, str]:
        slots = slots if slots is not None else manager_slots(self._slots, managers)
        # A node about to be made anew has no pin yet: its step waits for the new key.
        pins = {name: key for name, key in self._pins.items() if name not in self._unpinned}
        return {**self.target.variables(destroying=self._destroying), "swarm_init": str(swarm_init).lower(),
                "swarm_managers": str(managers), "swarm_workers": str(workers),
                "swarm_manager_slots": "[" + ",".join(map(str, slots)) + "]",
                # JSON is valid HCL, as `-var` takes a map.
                "swarm_host_keys": json.dumps(pins, sort_keys=True)}

    def _nodes_in_state(self, tf: Terraform, *, pin: bool = True) -> tuple[list[NodeRef], list[NodeRef]]:
        """The nodes as Terraform's outputs show them; with ``pin``, at the addresses the
        target sees now (the outputs are as old as the last Terraform run; a stop/start
        changes a public address), and each node's host key pinned (read where the target
        trusts it) before anything reaches it over SSH."""
        managers, workers = self._take_nodes(self._outputs(tf), live=pin)
        if pin:
            self._pins = self.target.pin_host_keys(managers + workers, self.progress.detail)
        return managers, workers

    def _outputs(self, tf: Terraform) -> dict[str, Any]:
        """Terraform's outputs. A state in the cluster's dir is read as the file it is (what
        `terraform output` reads, without starting Terraform); one in a bucket, by Terraform."""
        return tf.outputs() if self.settings.state_bucket else state_outputs(self.settings)

    def _take_nodes(self, outputs: dict[str, Any], *, live: bool) -> tuple[list[NodeRef],
                                                                            list[NodeRef]]:
        """The managers and workers of ``outputs``, remembered as this run's view of them;
        ``live``: at the addresses the target sees now, read in one look-up for all."""
        managers = refs_from_output(outputs.get("managers"))
        workers = refs_from_output(outputs.get("workers"))
        if live:
            self._facts = self.target.node_facts(managers + workers)
            managers = refreshed(managers, self._facts, self._say_once)
            workers = refreshed(workers, self._facts, self._say_once)
        self._slots = [m.slot for m in managers]
        self._refs = managers + workers
        self._joined = list(outputs.get("joined") or [])
        return managers, workers

    def apply_terraform(self, variables: Callable[[], dict[str, str]], secrets: dict[str, str],
                        *, replace: Sequence[str] = (), refresh: bool = True,
                        on_start: Callable[[str], None] | None = None) -> None:
        """``terraform apply``; then the host keys of the nodes it made are pinned and, where a
        node's swarm step waited for its key, applied once more so that the step runs.

        That second apply, and a first one with ``refresh`` False, take the state as the run
        before them left it seconds ago, under the operation's lock: no refresh (on AWS, a
        DescribeInstances and three DescribeInstanceAttribute calls per instance)."""
        tf = self._prepare()
        self._unpinned = {ref.name for address in replace if (ref := ref_for(address, self._refs or []))}
        # A node made anew keeps its name: once its new key is pinned, it counts as new.
        before = set(self._pins) - self._unpinned
        try:
            tf.apply(variables(), secrets, replace=replace, parallelism=self.parallelism,
                     refresh=refresh, on_start=on_start)
        finally:
            self._unpinned = set()
        self._nodes_in_state(tf)
        if set(self._pins) - before:
            waited = sorted(set(self._pins) - before - set(self._joined))
            if waited:
                with self.progress.step(f"host keys pinned for {', '.join(waited)}: running their "
                                        "swarm steps"):
                    tf.apply(variables(), secrets, parallelism=self.parallelism,
                             refresh=False)
                self._nodes_in_state(tf)

    # -- for the other use cases (replace-node, roll) -------------------------

    def terraform(self) -> Terraform:
        """Terraform, ready in this cluster's workspace (prepared on first use)."""
        return self._prepare()

    def nodes_in_state(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """The managers and workers Terraform manages, in index order."""
        return self._nodes_in_state(self._prepare())

    def existing_nodes(self) -> tuple[list[NodeRef], list[NodeRef]]:
        """The nodes Terraform manages; SwarmError if the cluster has none yet."""
        managers, workers = self.nodes_in_state()
        if not managers:
            raise SwarmError(f"cluster {self.settings.cluster!r} has no nodes; "
                             "run `invoke apply` to create it")
        return managers, workers

    def members(self, managers: list[NodeRef]) -> list[Node]:
        """The swarm's nodes, as a manager that answers for it lists them."""
        swarm = self.swarm(managers)
        return swarm.nodes(self.answering_manager(swarm))

    def variables(self, *, managers: int, workers: int, slots: list[int]) -> dict[str, str]:
        return self._variables(swarm_init=False, managers=managers, workers=workers, slots=slots)

    def node_facts(self) -> dict[str, NodeFacts]:
        """{swarm address: facts} of the nodes, where the target can tell (the image, the
        machine's state, drift from the settings), as read with the nodes: no second look-up."""
        if self._refs is None:
            self.nodes_in_state()
        return {ref.private_ip: self._facts[ref.name] for ref in self._refs or []
                if ref.name in self._facts}

    def _say_once(self, line: str) -> None:
        # The nodes are read again after every Terraform run: a stopped node is said once.
        if line not in self._said:
            self._said.add(line)
            self.progress.detail(line)

    def secrets(self, swarm: Swarm, via: str, managers: list[NodeRef]) -> dict[str, str]:
        """The join tokens and address, read from ``via``: for the child's environment only."""
        tokens = swarm.join_tokens(via)
        self._handed_out = swarm  # from here on, a failure rotates them
        return {"swarm_manager_token": tokens.manager, "swarm_worker_token": tokens.worker,
                "swarm_manager_ip": next(m.private_ip for m in managers if m.ssh_host == via)}

    def swarm(self, managers: list[NodeRef]) -> Swarm:
        assert self._profile is not None
        # A stopped manager cannot answer: asking it would only wait for SSH's deadline.
        ssh = SSH(self._profile, timeout=self.settings.ssh_timeout)
        swarm = Swarm(ssh, [m.ssh_host for m in managers
                            if self._facts.get(m.name, NodeFacts()).reachable],
                      dead_after=self.settings.dead_after)
        swarm.unlocker = self.unlocker(swarm)
        return swarm

    def unlocker(self, swarm: Swarm) -> StoredKeyUnlocker:
        """What unlocks this cluster's locked managers: one per command, so that the store
        is read once, and only when a lock is looked for."""
        if self._unlocker is None:
            self._unlocker = StoredKeyUnlocker(self.target.unlock_key_store(),
                                               SwarmLock(swarm.ssh), self.progress.detail,
                                               key_command(self.settings))
        return self._unlocker

    def answering_manager(self, swarm: Swarm) -> str:
        try:
            return swarm.active_manager()
        except SwarmError as exc:
            raise SwarmError(
                f"{exc}. The swarm may have lost its managers (after a reboot of the sandbox "
                f"machine, say); `invoke destroy --cluster {self.settings.cluster}` then "
                "`invoke apply` builds it anew.") from exc


@dataclass(frozen=True)
class HealthRead:
    health: Health
    via: str  # the manager that answered for the swarm ("": as a wait found it)
    rotated: bool  # the join tokens were rotated through it, once it answered healthy


def health_beside(swarm: Swarm, settings: Settings, rotate: bool) -> Beside[HealthRead | None]:
    """One read of the swarm's health, started at once beside the caller (it only waits
    for SSH), its answer taken later: None if no manager answered. With ``rotate``, a
    healthy answer is followed by a rotation of the join tokens through that manager."""
    return Beside(functools.partial(_read_health, swarm, settings.managers, settings.workers,
                                    rotate))


def _read_health(swarm: Swarm, managers: int, workers: int, rotate: bool) -> HealthRead | None:
    answer = None
    with contextlib.suppress(SwarmforgeError):  # no answer: apply waits for health
        health, via = swarm.first_look(managers, workers)
        if via is not None:
            answer = HealthRead(health, via, False)
    if rotate and answer and answer.health.healthy:
        with contextlib.suppress(SwarmforgeError):  # not rotated: apply rotates them
            swarm.rotate_tokens(answer.via)
            answer = dataclasses.replace(answer, rotated=True)
    return answer
