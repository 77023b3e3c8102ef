"""The backup use case: a copy of the swarm's raft, taken where it costs no quorum.

Docker's admin guide: stop Docker on a manager, archive /var/lib/docker/swarm,
start Docker again. That manager is out of the raft meanwhile, so it is never the
leader (no election) and only one whose absence leaves a majority of ALL managers
reachable: 3 managers with one already down cannot spare a second. A swarm of one
manager has nothing to spare: its backup stops the swarm's control plane for the
copy, so it is refused unless the operator allows that downtime.

The archive is made on the node and comes back over SSH's stdout (base64: SSH's
output is text here); the node keeps nothing. It holds the raft's keys: as secret
as the swarm itself, it is never printed, and the store keeps it for its owner only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from swarmforge.backup_store import BackupError, Manifest, Stored, packed
from swarmforge.cluster import Cluster
from swarmforge.departure import DRAIN_TIMEOUT
from swarmforge.errors import CommandError, QuorumError, SwarmError, SwarmforgeError
from swarmforge.nodes import NodeRef
from swarmforge.operation import utc_now
from swarmforge.progress import Progress
from swarmforge.ssh import SSH
from swarmforge.swarm import RECHECK, Node, Swarm, is_sound
from swarmforge.targets.base import NodeDocker

OPERATION = "backup"
FACTS = "docker info --format '{{json .}}'"


class OneManagerError(QuorumError):
    """A backup would stop the only manager: refused unless downtime is allowed."""


@dataclass(frozen=True)
class BackupOutcome:
    stored: Stored
    pruned: list[str]
    down_seconds: float  # how long the manager's Docker was stopped


def backup(cluster: Cluster, *, allow_downtime: bool = False) -> BackupOutcome:
    """Take a backup under the cluster's lock; keep the newest ``backup_keep``."""
    operations = cluster.target.operation_store()
    with operations.exclusive(f"invoke {OPERATION}", cluster.progress.detail):
        return take_backup(cluster, allow_downtime=allow_downtime)


def take_backup(cluster: Cluster, *, allow_downtime: bool = False,
                avoid: str = "") -> BackupOutcome:
    """The backup itself, for a caller that holds the cluster's lock (replace-node, roll);
    ``avoid``: the node ID of a manager about to be replaced (see backup_source)."""
    managers, _ = cluster.existing_nodes()
    swarm = cluster.swarm(managers)
    via = cluster.answering_manager(swarm)
    nodes, source, ref, facts = _chosen_source(swarm, managers, swarm.nodes(via),
                                               allow_downtime, avoid)
    docker = cluster.target.node_docker(ref)
    with (cluster.progress.step(f"backing up the swarm from {source.hostname} (its Docker is "
                                "stopped for the copy)"),
          _drained(swarm, via, source, others=len(nodes) - 1, progress=cluster.progress)):
        started = time.monotonic()
        taken = utc_now()
        swarm_dir = _copy_swarm_dir(swarm.ssh, ref.ssh_host, docker)
        _wait_back(swarm, _watcher(managers, nodes, source, ref), source,
                   cluster.settings.health_timeout)
        down = time.monotonic() - started
    manifest = Manifest(
        cluster=cluster.settings.cluster, swarm_id=facts["swarm_id"], node_id=source.id,
        hostname=source.hostname, docker_version=facts["docker_version"], taken=taken,
        sha256=hashlib.sha256(swarm_dir).hexdigest(), autolocked=facts["autolocked"] == "true")
    store = cluster.target.backup_store()
    stored = store.put(manifest, packed(manifest, swarm_dir))
    pruned = store.prune(cluster.settings.backup_keep)
    return BackupOutcome(stored, pruned, down)


def _chosen_source(swarm: Swarm, managers: Sequence[NodeRef], nodes: Sequence[Node],
                   allow_downtime: bool, avoid: str
                   ) -> tuple[Sequence[Node], Node, NodeRef, dict[str, str]]:
    """The nodes as judged, the source, its ref and the manifest's facts read from it.

    The node list is the raft's view, which learns of a manager's death only seconds
    after it: a source whose Docker does not answer as an active member, before or while
    its facts are read, counts as unreachable, and the choice is made again (or the
    backup refused, naming it)."""
    while True:
        source = backup_source(nodes, allow_downtime, avoid)
        ref = _ref_at(managers, source.address)
        try:
            if _in_the_swarm(swarm, ref.ssh_host):
                return nodes, source, ref, _facts(swarm.ssh, ref.ssh_host)
        except CommandError:
            if _in_the_swarm(swarm, ref.ssh_host):
                raise
        nodes = [replace(n, manager_status="unreachable") if n.id == source.id else n
                 for n in nodes]


def backup_source(nodes: Sequence[Node], allow_downtime: bool = False, avoid: str = "") -> Node:
    """The manager to copy: a reachable follower whose Docker may stop without losing the
    majority of ALL managers; QuorumError (what to do, in one line) if there is none.

    Not ``avoid`` (a node ID) while another will do: replace-node and roll name the manager
    they replace next, and a backup goes back only onto the manager it came from (see
    restore.py), which that one will no longer be."""
    managers = [n for n in nodes if n.role == "manager"]
    sound = [n for n in managers if is_sound(n)]
    if len(managers) == 1:
        if allow_downtime and sound:
            return sound[0]
        raise OneManagerError(
            "refusing to back up a swarm of 1 manager: its Docker must stop for the copy, and "
            "the swarm cannot be managed meanwhile (its services keep running); pass "
            "--allow-downtime to accept that, or run 3 managers")
    if (len(sound) - 1) * 2 <= len(managers):
        down = [n for n in managers if not is_sound(n)]
        named = ", ".join(f"manager {n.hostname} is {n.manager_status or n.status}" for n in down)
        fixes = " then ".join(f"`invoke replace-node {n.hostname} --yes`" for n in down)
        raise QuorumError(
            f"refusing to back up: {len(sound)} of {len(managers)} managers are reachable "
            f"({named}), and stopping one more for the copy would lose the majority; "
            f"replace it first: {fixes}")
    followers = sorted((n for n in sound if n.manager_status == "reachable"),
                       key=lambda n: (n.id != avoid, n.hostname))
    return followers[-1]  # not the manager asked first, nor the one about to go


@contextmanager
def _drained(swarm: Swarm, via: str, source: Node, *, others: int,
             progress: Progress) -> Iterator[None]:
    """The source's tasks moved away before its Docker stops, and it takes tasks again once
    it is back: stopping Docker would kill them where they run, and Swarm would start their
    successors only once it noticed the node gone. A manager an operator drained stays so."""
    if source.availability != "active" or not others:
        yield  # nowhere to move its tasks to (a one-node swarm): they stop with Docker
        return
    swarm.drain(source, via)
    swarm.wait_drained(source, via, DRAIN_TIMEOUT)
    back = False
    try:
        yield
        back = True
    finally:
        try:
            swarm.activate(source, via)
        except SwarmforgeError:
            if back:
                raise
            progress.detail(f"{source.hostname} is left drained: once it is back, "
                            f"`docker node update --availability active {source.hostname}`")


def _in_the_swarm(swarm: Swarm, host: str) -> bool:
    """Whether ``host``'s Docker answers as an active swarm member: the node list is the
    raft's view, which learns of a manager's death only seconds after it."""
    try:
        return swarm.member_state(host).get("LocalNodeState") == "active"
    except (CommandError, ValueError):
        return False


def _ref_at(refs: Sequence[NodeRef], address: str) -> NodeRef:
    for ref in refs:
        if ref.private_ip == address:
            return ref
    raise SwarmError(f"the manager at {address} is not one Terraform manages")


def _watcher(managers: Sequence[NodeRef], nodes: Sequence[Node], source: Node,
             ref: NodeRef) -> str:
    """Who watches the source come back: the leader (the source itself, if it is the only one)."""
    leader = next((n for n in nodes if n.manager_status == "leader"), source)
    return ref.ssh_host if leader is source else _ref_at(managers, leader.address).ssh_host


def _facts(ssh: SSH, host: str) -> dict[str, str]:
    """What the manifest says of the node's swarm, read before its Docker stops."""
    info = json.loads(ssh.check(host, FACTS, "docker info"))
    state = info.get("Swarm") or {}
    cluster = state.get("Cluster") or {}
    encryption = (cluster.get("Spec") or {}).get("EncryptionConfig") or {}
    return {"swarm_id": str(cluster.get("ID", "")),
            "docker_version": str(info.get("ServerVersion", "")),
            "autolocked": "true" if encryption.get("AutoLockManagers") else "false"}


def copy_script(docker: NodeDocker) -> str:
    """Stop Docker, tar its swarm dir into a 0600 file, start Docker, print the file
    (base64), remove it. Docker starts again whatever fails (the trap)."""
    root = shlex.quote(docker.data_root)
    return "; ".join([
        "set -e", "umask 077", "copy=$(mktemp)",
        f"trap '{docker.start} >/dev/null 2>&1; rm -f \"$copy\"' EXIT",
        f"{docker.stop} >&2",
        f"{docker.as_root}tar -C {root} -czf - swarm > \"$copy\"",
        f"{docker.start} >&2",
        "base64 -w0 \"$copy\"",
    ])


def _copy_swarm_dir(ssh: SSH, host: str, docker: NodeDocker) -> bytes:
    # run, not check: a failure's message must never carry stdout (the archive so far).
    result = ssh.run(host, copy_script(docker), what="the swarm dir's copy")
    if not result.ok:
        raise CommandError(f"the swarm dir's copy on {host}", result.returncode, result.stderr)
    try:
        return base64.b64decode(result.stdout.strip(), validate=True)
    except binascii.Error:
        raise BackupError(f"the swarm dir's copy from {host} came back damaged") from None


def _wait_back(swarm: Swarm, via: str, source: Node, timeout: float,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Until the source is a ready manager the raft reaches again (Reachable, or the
    leader of a one-manager swarm)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            back = next((n for n in swarm.nodes(via) if n.id == source.id), None)
        except (CommandError, SwarmError):
            back = None  # its Docker is still starting (a one-manager swarm)
        if back is not None and is_sound(back):
            return
        swarm.unlock_locked(always=True)  # autolock: back locked; the stored key opens it
        if time.monotonic() > deadline:
            raise SwarmError(f"{source.hostname} is not a reachable manager {timeout:.0f}s after "
                             "its Docker started again; see `invoke status`")
        sleep(RECHECK * 2)


def backup_first(cluster: Cluster, replacing: str, stopped: str = "nothing was changed",
                 avoid: str = "") -> None:
    """The backup replace-node and roll take before they touch a manager. A failure stops
    them before that manager; ``stopped`` says where, and the error how to skip it."""
    try:
        outcome = take_backup(cluster, avoid=avoid)
    except OneManagerError:  # its only manager is what is replaced: a surge keeps it up
        cluster.progress.detail("no backup first: the swarm's only manager would have to stop "
                                "for the copy (`invoke backup --allow-downtime` takes one)")
        return
    except QuorumError as exc:  # a manager is down: replacing another one is no safer
        raise QuorumError(f"no backup could be taken before replacing {replacing}, and "
                          f"{stopped}: {exc}") from exc
    except SwarmforgeError as exc:
        raise BackupError(f"no backup could be taken before replacing {replacing}, and "
                          f"{stopped}: {exc}. Pass --no-backup to replace it without "
                          "one") from exc
    cluster.progress.detail(f"backup {outcome.stored.name} stored in {outcome.stored.where}")
