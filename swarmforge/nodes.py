"""Who the nodes are, as Terraform names them: roles, indexes, manager slots, addresses.

The lowest layer of node identity: every other module may import it, and it
imports nothing of ours but errors. A node is ``<cluster>-<role>-<n>``, where n
is a worker's index or a manager's slot. A manager's slot names and places it
(its sandbox address, its AWS subnet by ``slot % 8``); its replacement takes the
twin slot (s + 8), so the two can run side by side during a surge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from swarmforge.errors import SwarmError

ROLES = ("manager", "worker")
NODE_NAME = re.compile(r"-(manager|worker)-(\d+)$")
JOIN_STEP_ADDRESS = re.compile(r'null_resource\.swarm_join\["([^"]+)"\]')
SLOT_POSITIONS = 8  # managers are at most 7; slot s and s+8 share a position (AZ, role)


@dataclass(frozen=True)
class NodeRef:
    """A node as Terraform knows it (from the ``managers``/``workers`` outputs)."""

    name: str
    private_ip: str
    ssh_host: str
    id: str = ""  # the machine's id (an EC2 instance id): a replaced node has a new one

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


def refs_from_output(items: Iterable[Mapping[str, Any]] | None) -> list[NodeRef]:
    """The nodes of one ``managers``/``workers`` Terraform output, in index order."""
    return [NodeRef(i["name"], i["private_ip"], i["ssh_host"], i.get("id") or "")
            for i in items or []]


def manager_slots(known: Sequence[int], count: int) -> list[int]:
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


def join_step_address(name: str) -> str:
    """The Terraform address of node ``name``'s swarm step (both configs have it so)."""
    return f'null_resource.swarm_join["{name}"]'


def join_step_of(address: str) -> str | None:
    """The node a swarm step's address is for (``null_resource.swarm_join["c-worker-1"]``
    gives ``c-worker-1``); None for any other address."""
    match = JOIN_STEP_ADDRESS.fullmatch(address)
    return match.group(1) if match else None


def is_node(address: str) -> bool:
    """Whether a Terraform address is a node (a host), not one of the steps run on it."""
    return ".swarm_manager[" in address or ".swarm_worker[" in address


#: What terraform/aws makes for each node and that references its instance: the ingress
#: NLB's attachments (ingress.tf). They change with the nodes, never in the network's
#: own apply: a -target of one would bring its node along.
NODE_FOLLOWERS = ("aws_lb_target_group_attachment.",)


def follows_a_node(address: str) -> bool:
    """Whether a Terraform address is made for a node and references it (NODE_FOLLOWERS)."""
    return address.startswith(NODE_FOLLOWERS)


def role_of(address: str) -> str:
    return "manager" if ".swarm_manager[" in address else "worker"


def index_of(address: str) -> int:
    return int(address.rsplit("[", 1)[1].rstrip("]"))


def short_address(address: str) -> str:
    """``swarm_worker[1]`` for ``null_resource.swarm_worker[1]``: the part both targets share."""
    return address.split(".", 1)[1]


def ref_for(address: str, refs: Sequence[NodeRef]) -> NodeRef | None:
    """The node behind a Terraform address such as ``null_resource.swarm_worker[1]``."""
    role, index = role_of(address), index_of(address)
    mine = [r for r in refs if r.role == role]
    return mine[index] if index < len(mine) else None
