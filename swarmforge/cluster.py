"""The cluster use cases: apply (two phases), status, destroy.

apply, as the recipe it comes from, in two Terraform runs:
  1. only if no swarm exists: manager 0 alone, with swarm_init=true;
  2. tokens read over SSH from a healthy manager, handed to Terraform as
     TF_VAR_* in its environment only; then everything else joins.
A re-run finds the swarm, skips phase 1 and completes whatever is missing.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from swarmforge.backend import S3Backend, render_backend, render_backend_settings
from swarmforge.errors import CommandError, QuorumError, SwarmError
from swarmforge.operation import Journal, exclusive
from swarmforge.progress import Progress
from swarmforge.settings import Settings
from swarmforge.ssh import SSH, SshProfile
from swarmforge.swarm import Health, Node, Swarm, is_sound, member_at
from swarmforge.targets import Target, target_for
from swarmforge.terraform import Plan, Terraform, required_version
from swarmforge.tools import cli_config, find_terraform
from swarmforge.workspace import render_workspace

NODE_NAME = re.compile(r"-(manager|worker)-(\d+)$")
SLOT_POSITIONS = 8  # managers are at most 7; slot s and s+8 share a position (AZ, role)


@dataclass(frozen=True)
class NodeRef:
    """A node as Terraform knows it (from the ``managers``/``workers`` outputs)."""

    name: str
    private_ip: str
    ssh_host: str

    @property
    def role(self) -> str:
        return self._name_parts()[0]

    @property
    def slot(self) -> int:
        """A manager's slot (its index for a worker): the number its name ends with."""
        return self._name_parts()[1]

    def _name_parts(self) -> tuple[str, int]:
        match = NODE_NAME.search(self.name)
        if not match:
            raise SwarmError(f"Terraform names a node {self.name!r}: not <cluster>-<role>-<n>")
        return match.group(1), int(match.group(2))


@dataclass
class ApplyReport:
    bootstrapped: bool = False
    changed: bool = False
    health: Health | None = None
    notes: list[str] = field(default_factory=list)


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

    # -- apply --------------------------------------------------------------

    def apply(self, rotate: bool = True) -> ApplyReport:
        with exclusive(self.settings.cluster_dir, self.settings.cluster, "invoke apply"):
            Journal(self.settings.cluster_dir).refuse_if_unfinished(self.settings.cluster)
            return self._apply(rotate)

    def _apply(self, rotate: bool) -> ApplyReport:
        report = ApplyReport()
        tf = self._prepare()
        managers, workers = self._nodes_in_state(tf)
        if self._needs_bootstrap(managers, workers):
            self._phase_one(tf)
            report.bootstrapped = True
            managers, workers = self._nodes_in_state(tf)
        self._refuse_scale_down(managers, workers)
        swarm = self.swarm(managers)
        via = self.answering_manager(swarm)
        report.changed = self._phase_two(tf, swarm, via, self.secrets(swarm, via, managers),
                                         managers + workers) or report.bootstrapped
        with self.progress.step("waiting for the swarm to be healthy"):
            report.health = swarm.wait_healthy(
                self.settings.managers, self.settings.workers, self.settings.health_timeout,
                on_wait=lambda h: self.progress.detail("waiting: " + "; ".join(h.problems)))
        if rotate:
            self.rotate_tokens(swarm)
        return report

    def rotate_tokens(self, swarm: Swarm | None = None) -> None:
        """New join tokens, so that the ones that travelled (env, nodes) are worth nothing.

        ``swarm`` defaults to the one reached through the managers in the state now.
        """
        swarm = swarm or self.swarm(self.nodes_in_state()[0])
        with self.progress.step("rotating the join tokens"):
            swarm.rotate_tokens(self.answering_manager(swarm))

    def _needs_bootstrap(self, managers: list[NodeRef], workers: list[NodeRef]) -> bool:
        """No swarm yet: no manager at all, or only a manager 0 whose bootstrap failed."""
        if not managers:
            return True
        if len(managers) > 1 or workers:
            return False
        # A lone manager 0 that is not in a swarm failed phase 1 (Terraform tainted
        # it); phase 1 again replaces it. A healthy one is left as it is.
        swarm = self.swarm(managers)
        try:
            return swarm.member_state(managers[0].ssh_host).get("LocalNodeState") != "active"
        except CommandError:
            # Unreachable: phase 1 replaces it if tainted, else changes nothing
            # and the search for an answering manager says what is wrong.
            return True

    def _phase_one(self, tf: Terraform) -> None:
        with self.progress.step("phase 1: bootstrap manager (docker swarm init)"):
            tf.apply(self._variables(swarm_init=True, managers=1, workers=0), {},
                     targets=[address_of(self.target.resource_type, "manager", 0)],
                     parallelism=self.settings.parallelism)

    def _phase_two(self, tf: Terraform, swarm: Swarm, via: str, secrets: dict[str, str],
                   refs: list[NodeRef]) -> bool:
        variables = self._variables(swarm_init=False, managers=self.settings.managers,
                                    workers=self.settings.workers)
        with self.progress.step("phase 2: planning the other managers and the workers"):
            plan = tf.plan(variables, secrets)
            kept = self._settle_tainted(tf, plan, swarm, via, refs)
            if kept:
                plan = tf.plan(variables, secrets)
            self._refuse_removals(plan)
        if plan.empty:
            self.progress.detail("nothing to change: every node Terraform manages exists")
            return kept
        with self.progress.step(f"phase 2: {len(plan.changes)} node(s) to create, "
                                f"joining through {secrets['swarm_manager_ip']}"):
            tf.apply(variables, secrets, parallelism=self.settings.parallelism)
        return True

    def _settle_tainted(self, tf: Terraform, plan: Plan, swarm: Swarm, via: str,
                        refs: list[NodeRef]) -> bool:
        """Before Terraform replaces nodes whose provisioning failed, look at them in the swarm.

        A node that joined and is sound is kept (untainted): replacing it would
        only churn the swarm. One that joined but is not sound leaves the swarm
        first (demoted if a manager), so replacing several managers at once can
        never take the raft majority down with them. Returns True if it untainted.
        """
        tainted = [c for c in plan.removals() if c.reason == "tainted"]
        if not tainted:
            return False
        nodes = swarm.nodes(via)
        kept = False
        for change in tainted:
            ref = _ref_for(change.address, refs)
            member = member_at(nodes, ref.private_ip) if ref else None
            if member is None:
                continue
            if is_sound(member) and role_of(change.address) == member.role:
                self.progress.detail(f"{member.hostname} is in the swarm and sound although its "
                                     "provisioning failed: keeping it")
                tf.untaint(change.address)
                kept = True
            else:
                self.progress.detail(f"{member.hostname} is {member.status}: taking it out of the "
                                     "swarm before Terraform replaces it")
                swarm.remove(member, via)
        return kept

    def _refuse_scale_down(self, managers: list[NodeRef], workers: list[NodeRef]) -> None:
        s = self.settings
        if len(managers) > s.managers or len(workers) > s.workers:
            raise QuorumError(
                f"refusing to scale down from {len(managers)} managers + {len(workers)} workers "
                f"to {s.managers} + {s.workers}: Terraform would destroy nodes without draining or "
                "demoting them first. Keep --managers/--workers at least at the current counts.")

    def _refuse_removals(self, plan: Plan) -> None:
        # Replacing a node whose provisioning failed (tainted) is how a failed
        # run resumes; any other removal would destroy a running node unasked.
        unsafe = [c for c in plan.removals() if c.reason != "tainted"]
        if unsafe:
            listed = ", ".join(f"{c.address} ({c.action})" for c in unsafe)
            raise QuorumError(f"refusing to apply: Terraform would remove running nodes: {listed}. "
                              "Nothing was changed; replacing nodes is replace-node's job.")

    # -- status and destroy -------------------------------------------------

    def status(self, expect: tuple[int, int] | None = None) -> Health:
        """The swarm's nodes and health, judged against ``expect`` (managers, workers)
        or, by default, against the nodes Terraform manages."""
        managers, workers = self.existing_nodes()
        wanted = expect or (len(managers), len(workers))
        return self.swarm(managers).health(*wanted)

    def destroy(self) -> bool:
        """Destroy every node and what the target made; False if there was nothing."""
        if not self.target.exists():
            return False
        with exclusive(self.settings.cluster_dir, self.settings.cluster, "invoke destroy"):
            return self._destroy()

    def _destroy(self) -> bool:
        tf = self._prepare()
        managers, workers = self._nodes_in_state(tf)
        with self.progress.step(f"destroying {len(managers)} manager(s) and {len(workers)} worker(s)"):
            tf.apply(self._variables(swarm_init=False, managers=len(managers), workers=len(workers)),
                     {}, destroy=True, parallelism=self.settings.parallelism)
        with self.progress.step(f"removing what the {self.target.name} target made"):
            self.target.teardown()
            shutil.rmtree(self.settings.cluster_dir, ignore_errors=True)
        return True

    # -- shared -------------------------------------------------------------

    def _prepare(self) -> Terraform:
        if self._terraform:
            return self._terraform
        cluster_dir = self.settings.cluster_dir
        cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self.progress.step(f"preparing cluster {self.settings.cluster!r} "
                                f"on the {self.target.name} target"):
            self._profile = self.target.prepare()
            needed = required_version(self.target.config_dir)
            binary, version = find_terraform(self.settings.terraform_bin, needed,
                                             f"terraform/{self.target.name}")
            tf = Terraform(binary, cluster_dir / "terraform",
                           env={"TF_CLI_CONFIG_FILE": str(cli_config(cluster_dir / "terraformrc"))},
                           progress=self.progress.detail, log_file=cluster_dir / "terraform.log")
            backend_tf, backend_settings = self._backend(version)
            render_workspace(self.target.config_dir, tf.workdir, backend_tf)
            tf.init(backend_settings)
        self._terraform = tf
        return tf

    def _backend(self, version: Version) -> tuple[str | None, str | None]:
        """(backend.tf, -backend-config settings) for a state bucket. A config that declares
        its own partial ``backend "s3" {}`` (terraform/aws) gets the settings only. Without a
        bucket, both None: the state stays in the cluster's own dir."""
        s = self.settings
        if not s.state_bucket:
            return None, None
        backend = S3Backend(bucket=s.state_bucket, key=s.state_key,
                            region=s.state_region or s.region, endpoint=s.state_endpoint,
                            dynamodb_table=s.state_lock_table)
        config = "".join(p.read_text() for p in self.target.config_dir.glob("*.tf"))
        if 'backend "s3" {}' in config:
            return None, render_backend_settings(backend, version)
        return render_backend(backend, version), None

    def _variables(self, *, swarm_init: bool, managers: int, workers: int,
                   slots: list[int] | None = None) -> dict[str, str]:
        slots = slots if slots is not None else manager_slots(self._slots, managers)
        return {**self.target.variables(), "swarm_init": str(swarm_init).lower(),
                "swarm_managers": str(managers), "swarm_workers": str(workers),
                "swarm_manager_slots": "[" + ",".join(map(str, slots)) + "]"}

    def _nodes_in_state(self, tf: Terraform) -> tuple[list[NodeRef], list[NodeRef]]:
        outputs = tf.outputs()
        managers, workers = _refs(outputs.get("managers")), _refs(outputs.get("workers"))
        self._slots = [m.slot for m in managers]
        self._refs = managers + workers
        return managers, workers

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

    def node_images(self) -> dict[str, str]:
        """{swarm address: image id} of the nodes, where the target can tell (local: the
        image a host booted from; aws: the AMI an instance runs), as status last saw them."""
        if self._refs is None:
            self.nodes_in_state()
        refs = self._refs or []
        images = self.target.node_images(refs)
        return {ref.private_ip: images[ref.name] for ref in refs if ref.name in images}

    def secrets(self, swarm: Swarm, via: str, managers: list[NodeRef]) -> dict[str, str]:
        """The join tokens and address, read from ``via``: for the child's environment only."""
        tokens = swarm.join_tokens(via)
        return {"swarm_manager_token": tokens.manager, "swarm_worker_token": tokens.worker,
                "swarm_manager_ip": next(m.private_ip for m in managers if m.ssh_host == via)}

    def swarm(self, managers: list[NodeRef]) -> Swarm:
        assert self._profile is not None
        return Swarm(SSH(self._profile), [m.ssh_host for m in managers])

    def answering_manager(self, swarm: Swarm) -> str:
        try:
            return swarm.active_manager()
        except SwarmError as exc:
            raise SwarmError(
                f"{exc}. The swarm may have lost its managers (after a reboot of the sandbox "
                f"machine, say); `invoke destroy --cluster {self.settings.cluster}` then "
                "`invoke apply` builds it anew.") from exc


def manager_slots(known: list[int], count: int) -> list[int]:
    """The slots of ``count`` managers: the known ones, then free positions for new ones.

    A slot's position (slot % 8) stays put across replacements (s and s+8 are
    twins), so a new manager takes the lowest position no manager holds.
    """
    slots = list(known[:count])
    for position in range(SLOT_POSITIONS):
        if len(slots) >= count:
            break
        if all(s % SLOT_POSITIONS != position for s in slots):
            slots.append(position)
    return slots


def twin_slot(slot: int) -> int:
    """The slot a manager's replacement takes: same position, the other of the pair."""
    return (slot + SLOT_POSITIONS) % (2 * SLOT_POSITIONS)


def address_of(resource_type: str, role: str, index: int) -> str:
    """The Terraform address of a node, e.g. ``null_resource.swarm_worker[1]``."""
    return f"{resource_type}.swarm_{role}[{index}]"


def role_of(address: str) -> str:
    return "manager" if ".swarm_manager[" in address else "worker"


def index_of(address: str) -> int:
    return int(address.rsplit("[", 1)[1].rstrip("]"))


def _ref_for(address: str, refs: list[NodeRef]) -> NodeRef | None:
    """The node behind a Terraform address such as ``null_resource.swarm_worker[1]``."""
    role, index = role_of(address), index_of(address)
    mine = [r for r in refs if r.role == role]
    return mine[index] if index < len(mine) else None


def _refs(items: Any) -> list[NodeRef]:
    return [NodeRef(i["name"], i["private_ip"], i["ssh_host"]) for i in items or []]
