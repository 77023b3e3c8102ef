"""The restore use case: a swarm whose managers lost their majority for good, made whole.

Docker's admin guide, "Recover from losing the quorum": on one manager, `docker
swarm init --force-new-cluster`; it becomes the single manager of a swarm that
keeps the services, tasks, secrets, configs and workers its raft holds. That
manager (the survivor) is one whose Docker still runs, with its own raft state:
nothing of the raft is lost. Or, with a backup, any manager that answers SSH: the
archive replaces its swarm dir first (Docker stopped), and the node takes the
identity of the manager the archive came from; what changed after the backup is lost.

Then the manager count comes back: the other managers' entries are removed
(demote, node rm --force), and their hosts are made anew with Terraform
(``-replace``), joining through the survivor with tokens rotated since the
old ones could have travelled. Workers that are alive stay and keep their tasks.

It refuses while any manager still has a majority (replace-node replaces a dead
manager without losing anything). Each step is journalled: a restore stopped
half-way carries on when run again.
"""

from __future__ import annotations

import base64
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from swarmforge.autolock import AutolockError
from swarmforge.backup_store import BackupError, Manifest, newest_first, unpacked
from swarmforge.cluster import Cluster
from swarmforge.errors import CommandError, QuorumError, SwarmError
from swarmforge.nodes import NodeRef, address_of
from swarmforge.operation import Journal, Operation, RestoreRecord
from swarmforge.swarm import Swarm

OPERATION = "restore"
LATEST = "latest"  # --from-backup latest: the newest archive in the store
# Docker drops the unlock key when it forces a new cluster (Cluster.Init starts the node
# without it), and the node, left in no swarm, is locked again after a restart: open since
# 2018 (moby/moby#36852, Docker 20.10 to the latest). So a restore never starts on one.
AUTOLOCKED = (
    "refusing to restore: the swarm is autolocked, and Docker cannot force a new cluster on an "
    "autolocked manager (`docker swarm init --force-new-cluster` drops the unlock key and "
    "leaves the node in no swarm: moby/moby#36852). Bring a majority of the managers back "
    "instead (start their machines: `invoke status` unlocks them with the stored key); "
    "backups taken while autolock is on cannot be restored")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # operation.utc_now's


@dataclass(frozen=True)
class RestoreOutcome:
    plan: list[str]
    acted: bool
    resumed: bool
    rto: float = 0.0  # seconds from the command's start (a resumed one: its first run's) to healthy


def restore(cluster: Cluster, *, act: bool, from_backup: str | None = None,
            show: Callable[[list[str]], None] = lambda plan: None) -> RestoreOutcome:
    """Make the swarm anew on one manager and bring the managers back; preview unless ``act``."""
    began = time.monotonic()
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION}", cluster.progress.detail):
        journal = operations.journal()
        found = journal.load()
        resumed = isinstance(found, RestoreRecord)
        record = found if isinstance(found, RestoreRecord) else _new_record(cluster, from_backup)
        plan = describe(record, abandoned=None if resumed else found)
        show(plan)
        if not act:
            return RestoreOutcome(plan, acted=False, resumed=resumed)
        if not resumed:
            journal.begin(record)
        with cluster.tokens_rotated_if_failed():
            _run(cluster, record, journal)
        journal.finish()
        # A resumed restore counts from its first run's start, as the journal has it.
        rto = _since(record.started) if resumed else time.monotonic() - began
        return RestoreOutcome(plan, acted=True, resumed=resumed, rto=rto)


def _new_record(cluster: Cluster, from_backup: str | None) -> RestoreRecord:
    managers, _ = cluster.existing_nodes()
    swarm = cluster.swarm(managers)
    backup, source = _chosen_backup(cluster, from_backup) if from_backup else (None, None)
    if (source and source.autolocked) or cluster.unlocker(swarm).armed:
        raise AutolockError(AUTOLOCKED)  # whatever the quorum: no restore can work
    _refuse_with_quorum(swarm)
    survivor = (_backup_host(swarm, managers, source.hostname) if source
                else _survivor(swarm, managers))
    taken = source.taken if source else None
    s = cluster.settings
    lost = [address_of(cluster.target.resource_type, "manager", i)
            for i, m in enumerate(managers) if m != survivor]
    whence = f" from backup {backup}" if backup else ""
    return RestoreRecord(
        summary=f"restore the swarm on {survivor.name}{whence}",
        resume=f"invoke restore --cluster {s.cluster} --target {s.target} --yes",
        survivor=survivor.name, lost=lost, backup=backup, taken=taken)


def _refuse_with_quorum(swarm: Swarm) -> None:
    try:
        via = swarm.active_manager()
    except SwarmError:
        return  # no manager answers for the swarm: what a restore is for
    raise QuorumError(
        f"refusing to restore: the swarm still has a majority of managers ({via} answers for "
        "it), and a restore would discard every other manager; replace a dead manager "
        "without losing anything: `invoke replace-node NODE --yes`")


def _chosen_backup(cluster: Cluster, name: str) -> tuple[str, Manifest]:
    """(archive name, its manifest): the one named, or the newest for ``latest``."""
    store = cluster.target.backup_store()
    if name != LATEST:
        manifest, _ = unpacked(store.get(name))
        return name, manifest
    stored = newest_first(store.backups())
    if not stored:
        raise BackupError(f"no backup in {store.where}: `invoke backup` takes one")
    return stored[0].name, stored[0].manifest


def _backup_host(swarm: Swarm, managers: Sequence[NodeRef], hostname: str) -> NodeRef:
    """The manager the backup was taken on. Its raft keeps the manager's address as it
    was (`--force-new-cluster --advertise-addr` does not change it): restored elsewhere,
    the managers that join next are sent to that old address, and the swarm loses its
    quorum again (seen in the sandbox). So the archive goes back where it came from."""
    ref = next((m for m in managers if m.name == hostname), None)
    if ref is None:
        raise SwarmError(f"the backup was taken on {hostname}, which Terraform no longer "
                         "manages: restore a backup of a manager that exists")
    if not swarm.answers(ref.ssh_host):
        raise SwarmError(f"{hostname}, where the backup was taken, does not answer over SSH: "
                         "it must be up (with its address) for the backup to go back onto it")
    return ref


def _survivor(swarm: Swarm, managers: Sequence[NodeRef]) -> NodeRef:
    """The first manager whose Docker runs as a manager: its raft state is kept."""
    for ref in managers:
        try:
            state = swarm.member_state(ref.ssh_host)
        except CommandError:
            continue
        if state.get("LocalNodeState") == "locked":  # autolock on, its key not stored here
            raise AutolockError(AUTOLOCKED)
        if state.get("LocalNodeState") == "active" and state.get("ControlAvailable"):
            return ref
    raise SwarmError("no manager's Docker runs with its swarm state: restore from a backup "
                     f"(`invoke restore --from-backup {LATEST} --yes`)")


def describe(record: RestoreRecord, abandoned: Operation | None = None) -> list[str]:
    """What the restore does and what it loses, step by step ("(done)" on done ones)."""
    lost_count = len(record.lost)
    if record.backup:
        source = (f"backup {record.backup}, taken {record.taken}: everything the swarm changed "
                  f"after {record.taken} is lost (services, secrets, configs, nodes, updates)")
    else:
        source = "its own raft state: nothing of the swarm's state is lost"
    steps = [
        ("unpack", f"stop Docker on {record.survivor}, replace its swarm dir with the backup, "
                   "start Docker") if record.backup else None,
        ("force-new-cluster", f"docker swarm init --force-new-cluster on {record.survivor}, "
                              "then rotate the join tokens"),
        ("remove-lost", "remove the other managers' entries (node rm --force)"),
        ("replace-lost", f"make {lost_count} manager host(s) anew (terraform apply -replace "
                         f"{' '.join(record.lost)}); they join through {record.survivor}"),
        ("settle", "wait until the swarm is healthy, then rotate the join tokens"),
    ]
    lines = [f"survivor: {record.survivor}, from {source}",
             "workers that are alive stay and keep their tasks; dead ones stay dead "
             "(replace them after: `invoke replace-node NODE --yes`)"]
    if abandoned is not None:
        lines.append(f"the unfinished {abandoned.operation} ({abandoned.summary}) is dropped; "
                     f"run `{abandoned.resume.replace(' --yes', '')}` again after")
    numbered = [s for s in steps if s is not None]
    for i, (name, text) in enumerate(numbered, 1):
        lines.append(f"{i}. {text}" + (" (done)" if name in record.done else ""))
    return lines


def _run(cluster: Cluster, record: RestoreRecord, journal: Journal) -> None:
    managers, _ = cluster.nodes_in_state()
    survivor = next(m for m in managers if m.name == record.survivor)
    swarm = cluster.swarm([survivor])
    steps: list[tuple[str, Callable[[], None]]] = [
        ("unpack", lambda: _unpack(cluster, swarm, survivor, str(record.backup))),
        ("force-new-cluster", lambda: _force_new_cluster(swarm, survivor)),
        ("remove-lost", lambda: _remove_lost(swarm, survivor)),
        ("replace-lost", lambda: _replace_lost(cluster, swarm, survivor, record.lost)),
        ("settle", lambda: _settle(cluster)),
    ]
    if "replace-lost" not in record.done:
        # Stopped before the managers were back: a half-joined one may have left the raft
        # without a majority. The new cluster is forced again (it is idempotent), and every
        # manager but the survivor removed and made anew again.
        record.done = [d for d in record.done if d == "unpack"]
    for name, step in steps:
        if name in record.done or (name == "unpack" and not record.backup):
            continue
        with cluster.progress.step(f"restore: {name}"):
            step()
        record.done.append(name)
        journal.save(record)


def unpack_script(docker_stop: str, docker_start: str, data_root: str, as_root: str) -> str:
    """Docker stopped, its swarm dir replaced by the archive read on stdin (base64),
    Docker started again (whatever failed: the trap)."""
    root = shlex.quote(data_root)
    return "; ".join([
        "set -e", f"trap '{docker_start} >/dev/null 2>&1' EXIT", f"{docker_stop} >&2",
        f"{as_root}rm -rf {root}/swarm", f"{as_root}mkdir -p {root}",
        f"base64 -d | {as_root}tar -C {root} -xzf -", f"{docker_start} >&2",
    ])


def _unpack(cluster: Cluster, swarm: Swarm, survivor: NodeRef, name: str) -> None:
    manifest, swarm_dir = unpacked(cluster.target.backup_store().get(name))
    if manifest.autolocked:  # refused at the plan already; never unpacked to be stuck
        raise AutolockError(AUTOLOCKED)
    docker = cluster.target.node_docker(survivor)
    script = unpack_script(docker.stop, docker.start, docker.data_root, docker.as_root)
    result = swarm.ssh.run(survivor.ssh_host, script, what="the backup's unpacking",
                           stdin=base64.b64encode(swarm_dir).decode())
    if not result.ok:
        raise CommandError(f"the backup's unpacking on {survivor.name}", result.returncode,
                           result.stderr)


def _force_new_cluster(swarm: Swarm, survivor: NodeRef) -> None:
    # Its stdout holds a join command with a token: never kept.
    swarm.ssh.check(survivor.ssh_host, "docker swarm init --force-new-cluster --advertise-addr "
                                       f"{survivor.private_ip} >/dev/null",
                    "docker swarm init --force-new-cluster")
    swarm.rotate_tokens(survivor.ssh_host)  # whatever tokens travelled before are worth nothing


def _remove_lost(swarm: Swarm, survivor: NodeRef) -> None:
    """The other managers' entries: no longer raft members (Docker refuses to demote them:
    "can't find manager in raft memberlist"), so removed as they are."""
    own = str(swarm.member_state(survivor.ssh_host).get("NodeID", ""))
    for node in swarm.nodes(survivor.ssh_host):
        if node.role == "manager" and node.id != own:
            swarm.manage(survivor.ssh_host, f"docker node rm --force {node.id} >/dev/null",
                         f"remove {node.hostname}")


def _replace_lost(cluster: Cluster, swarm: Swarm, survivor: NodeRef, lost: list[str]) -> None:
    managers, workers = cluster.nodes_in_state()
    secrets = cluster.secrets(swarm, survivor.ssh_host, managers)
    cluster.apply_terraform(
        lambda: cluster.variables(managers=len(managers), workers=len(workers),
                                  slots=[m.slot for m in managers]),
        secrets, replace=lost)


def _settle(cluster: Cluster) -> None:
    managers, workers = cluster.nodes_in_state()
    swarm = cluster.swarm(managers)
    swarm.wait_healthy(len(managers), len(workers), cluster.settings.health_timeout,
                       on_wait=lambda h: cluster.progress.detail("waiting: " + "; ".join(h.problems)))
    cluster.rotate_tokens(swarm)


def _since(started: str | None) -> float:
    if not started:
        return 0.0
    began = datetime.strptime(started, TIME_FORMAT).replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - began).total_seconds()
