"""Local access to a cluster: a Docker context on the operator's machine, a shell on a node.

Both reach the nodes as every command of ours does, with the cluster's key and its
pinned host keys, on every target: only the target's SshProfile differs. Like
`status`, they only read the cluster (no lock, no Terraform), so they may run beside
an apply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

from swarmforge.cluster import Cluster
from swarmforge.docker_context import remove_context, save_context, swarm_through
from swarmforge.errors import CommandError, ConfigError, SwarmError, SwarmforgeError, ToolError
from swarmforge.nodes import NodeRef
from swarmforge.operator_ssh import (
    alias_file,
    alias_name,
    exec_ssh,
    forget_alias,
    include_alias,
    include_line,
    included_alias,
    user_ssh_config,
    write_alias,
)
from swarmforge.picks import find_node
from swarmforge.settings import Settings
from swarmforge.swarm import Node, Swarm, member_at
from swarmforge.targets import target_for

# `invoke ssh leader`: Invoke has no optional positional argument, so the default is a word.
LEADER = "leader"


@dataclass(frozen=True)
class ContextMade:
    name: str  # the context's, and the ssh alias's
    manager: str  # the manager it reaches, by hostname
    address: str  # that manager's SSH address
    saved: str  # created | updated | unchanged
    include: str  # the Include line ~/.ssh/config needs
    ssh_config: str  # ~/.ssh/config, as ssh finds it
    included: bool  # that line was put into it just now
    checked: bool  # docker reached the swarm through the context


@dataclass(frozen=True)
class ContextGone:
    name: str
    context: bool  # a Docker context was removed
    include: bool  # an Include was taken out of ~/.ssh/config


def open_context(cluster: Cluster, *, edit_ssh_config: bool = True) -> ContextMade:
    """Point the Docker context ``swarmforge-<cluster>`` at the leader, over SSH: create it,
    or update it when the manager it reached was replaced. With ``edit_ssh_config``,
    ~/.ssh/config gets the Include that lets docker's ssh find the alias, and a docker
    command goes through the context to prove it."""
    managers, _ = cluster.nodes_as_read()
    swarm = cluster.swarm(managers)
    via = cluster.answering_manager(swarm)
    manager, address = _leader(swarm.nodes(via), managers, swarm, via)
    name = alias_name(cluster.settings.cluster)
    profile = swarm.ssh.profile
    moved = write_alias(profile, name, address)
    included = edit_ssh_config and include_alias(cluster.settings.cluster, alias_file(profile))
    saved = save_context(name, f"ssh://{name}", f"swarmforge cluster {cluster.settings.cluster} "
                         f"({cluster.settings.target})")
    if saved == "unchanged" and moved:  # the same context, through another manager now
        saved = "updated"
    if edit_ssh_config:
        _check_context(name, cluster.settings.ssh_timeout)
    return ContextMade(name, manager, address, saved, include_line(alias_file(profile)),
                       str(user_ssh_config()), included, checked=edit_ssh_config)


def _leader(members: Sequence[Node], managers: Sequence[NodeRef], swarm: Swarm,
            via: str) -> tuple[str, str]:
    """(hostname, SSH address) of the manager the context reaches: the leader, which serves
    the swarm's API without forwarding to another manager and is the one a roll replaces
    last; ``via`` (a manager that just answered) when the leader cannot be reached from here."""
    by_address = {ref.private_ip: ref for ref in managers}
    leader = next((n for n in members if n.manager_status == "leader"), None)
    ref = by_address.get(leader.address) if leader else None
    if leader and ref and ref.ssh_host in swarm.manager_hosts:
        return leader.hostname, ref.ssh_host
    answered = next(ref for ref in managers if ref.ssh_host == via)
    member = member_at(members, answered.private_ip)
    return (member.hostname if member else answered.name), via


def _check_context(name: str, timeout: float) -> None:
    try:
        swarm = swarm_through(name, timeout)
    except CommandError as exc:
        raise CommandError(exc.what, exc.returncode, exc.output,
                           hint=f"the context {name} and its ssh alias are saved; "
                                f"`ssh {name} true` shows what ssh says") from exc
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        raise SwarmError(f"docker reached {name}, but it is not an active manager of the swarm; "
                         "run `invoke context` again to point it at the leader")


def close_context(settings: Settings) -> ContextGone:
    """Remove the Docker context, the Include in ~/.ssh/config and the alias file: also
    for a cluster that was destroyed meanwhile (``invoke destroy`` calls it last)."""
    name = alias_name(settings.cluster)
    try:
        context = remove_context(name)
    except ToolError:  # no docker CLI here: no context of its to remove either
        context = False
    include = forget_alias(settings.cluster)
    profile = target_for(settings).ssh_profile()
    if profile is not None:  # written, but never included (--no-ssh-config)
        alias_file(profile).unlink(missing_ok=True)
    return ContextGone(name, context, include)


def close_own_context(settings: Settings) -> ContextGone:
    """``close_context`` for ``invoke destroy``: only when ~/.ssh/config includes, under the
    cluster's mark, the alias file of this state dir's cluster. A context of the same
    cluster name made from another checkout (its own state dir) is that one's, and stays;
    so does one made with --no-ssh-config, whose owner nothing here names."""
    included = included_alias(settings.cluster)
    ours = (settings.cluster_dir / "ssh").resolve()
    if included is None or included.resolve().parent != ours:
        return ContextGone(alias_name(settings.cluster), context=False, include=False)
    return close_context(settings)


def open_shell(cluster: Cluster, node: str, command: str,
               say: Callable[[str], None]) -> NoReturn:
    """Become ssh to ``node`` (a hostname, node ID or unique prefix, IP, Terraform address,
    or ``leader``), with the cluster's ssh_config: a shell, or ``command`` run there."""
    managers, workers = cluster.nodes_as_read()
    swarm = cluster.swarm(managers)
    if node == LEADER:
        host = _leader_host(cluster, swarm, managers, say)
    else:
        host = _node_host(cluster, swarm, node, managers, workers, say)
    exec_ssh(swarm.ssh.profile, host, command)


def _leader_host(cluster: Cluster, swarm: Swarm, managers: Sequence[NodeRef],
                 say: Callable[[str], None]) -> str:
    members, via = _members(swarm, say)
    if via:
        return _leader(members, managers, swarm, via)[1]
    if not swarm.manager_hosts:
        raise SwarmError(f"cluster {cluster.settings.cluster!r} has no manager running")
    say(f"swarmforge: opening {swarm.manager_hosts[0]}, the first manager, instead")
    return swarm.manager_hosts[0]


def _node_host(cluster: Cluster, swarm: Swarm, node: str, managers: Sequence[NodeRef],
               workers: Sequence[NodeRef], say: Callable[[str], None]) -> str:
    """The SSH address of ``node``. Terraform's names and addresses are known without
    the swarm; a node ID (or a hostname the swarm alone knows) needs a manager's answer."""
    resource_type = cluster.target.resource_type
    try:
        return find_node(node, resource_type, managers, workers, []).ref.ssh_host
    except ConfigError:
        members, _ = _members(swarm, say)
        return find_node(node, resource_type, managers, workers, members).ref.ssh_host


def _members(swarm: Swarm, say: Callable[[str], None]) -> tuple[list[Node], str]:
    """The swarm's nodes as a manager lists them, and that manager; ([], "") when none
    answers (said why)."""
    try:
        via = swarm.active_manager()
        return swarm.nodes(via), via
    except SwarmforgeError as exc:
        say(f"swarmforge: {str(exc).splitlines()[0]}")
        return [], ""
