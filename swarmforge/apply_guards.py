"""What apply refuses, and the one kind of node it makes anew by itself.

Refused, with nothing changed: any plan that removes a running node (fewer nodes
than exist is scale_in.py's: they leave the swarm first). Made anew: a node that
never joined the swarm and no longer answers over SSH (or answers with a key that
cannot be verified), as a failed launch is.
Applied first, before the swarm is reached: the network changes of a plan, so
that a new allowed_ssh_cidrs lets the operator in before apply needs SSH.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from swarmforge.errors import QuorumError
from swarmforge.nodes import NodeRef, address_of, is_node, join_step_of
from swarmforge.swarm import Swarm, member_at
from swarmforge.terraform_output import Plan


def refuse_removals(plan: Plan, remade: list[str]) -> None:
    """Replacing a node whose creation failed (tainted), or one that never joined and is
    gone (``remade``), is how a failed run resumes; any other node removal would destroy
    a running node unasked. Swarm steps may be redone: joining is idempotent on the node."""
    unsafe = [c for c in plan.removals()
              if c.reason != "tainted" and is_node(c.address) and c.address not in remade]
    if unsafe:
        listed = ", ".join(f"{c.address} ({c.action})" for c in unsafe)
        raise QuorumError(f"refusing to apply: Terraform would remove running nodes: {listed}. "
                          "Nothing was changed; replacing nodes is replace-node's job.")


def changes_before_the_swarm(plan: Plan) -> list[str]:
    """The addresses to apply (``-target``) before the swarm is reached: every change that
    is neither a node nor a swarm step. A target brings its dependencies along, never its
    dependents, and nothing of the network depends on a node (tests/test_network_first.py),
    so no node or step changes in that apply and no token is needed for it.

    While nodes change too, only what is created or updated goes first: a replaced or
    deleted object may still be referenced by a node (a security group by its instances),
    and removing it before the node lets go of it fails; the full apply orders that."""
    support = plan.support_changes()
    if not plan.swarm_changes():
        return [c.address for c in support]
    return [c.address for c in support if c.action not in ("delete", "replace")]


def swarm_only_config(config_dir: Path) -> bool:
    """Whether the config manages nothing but the nodes and their swarm steps (the sandbox):
    then no plan can hold a network change, and the swarm may be reached while Terraform
    plans. A config with anything else (terraform/aws: rules, NAT) is reached only after."""
    text = "\n".join(p.read_text() for p in sorted(config_dir.glob("*.tf")))
    resources = re.findall(r'^\s*resource\s+"([\w-]+)"\s+"([\w-]+)"', text, re.M)
    return bool(resources) and all(is_node(f"{kind}.{name}[0]")
                                   or join_step_of(f'{kind}.{name}["node"]') is not None
                                   for kind, name in resources)


def nodes_to_remake(plan: Plan, swarm: Swarm, via: Callable[[], str], managers: list[NodeRef],
                    workers: list[NodeRef], resource_type: str,
                    say: Callable[[str], None]) -> list[str]:
    """Addresses of the nodes whose swarm step failed and that SSH cannot reach any more.
    Never a swarm member: replacing one of those is replace-node's job. ``via`` finds a
    manager that answers: called only when a swarm step failed, so a plan without one
    never reaches the swarm."""
    failed = [name for c in plan.removals() if c.reason == "tainted"
              and (name := join_step_of(c.address))]
    if not failed:
        return []
    members = swarm.nodes(via())
    remake = []
    for role, refs in (("manager", managers), ("worker", workers)):
        for index, ref in enumerate(refs):
            if ref.name not in failed or member_at(members, ref.private_ip):
                continue
            if not swarm.answers(ref.ssh_host):
                say(f"{ref.name} never joined and does not answer over SSH: making it anew")
                remake.append(address_of(resource_type, role, index))
    return remake
