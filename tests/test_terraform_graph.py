"""terraform/aws read as Terraform's graph walk meets it: a step that needs SSH never starts
before the rules that open SSH exist.

The SSH ingress rules are separate resources that an instance does not reference,
so nothing but an explicit edge (a reference or ``depends_on``) orders them
before a provisioner. Without one, `-target` or plain parallelism starts the
provisioner first, and it times out on a closed port 22.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

AWS = Path(__file__).resolve().parent.parent / "terraform" / "aws"
#: What opens port 22: from the operator's networks, and between members (private workers'
#: bastion hop).
SSH_RULES = {"aws_vpc_security_group_ingress_rule.ssh", "aws_vpc_security_group_ingress_rule.swarm"}
SSH_PROVISIONERS = {"file", "remote-exec"}
REFERENCE = re.compile(r"\b(aws_[a-z0-9_]+\.[a-z0-9_]+|null_resource\.[a-z0-9_]+|local\.[a-z0-9_]+)")


def test_every_ssh_step_waits_for_the_rules_that_open_ssh() -> None:
    ssh_steps = [address for address, body in _resources().items() if _uses_ssh(body)]

    assert ssh_steps, "no resource of terraform/aws provisions over SSH: nothing checked"
    for address in ssh_steps:
        missing = SSH_RULES - _reaches(address)
        assert not missing, f"{address} may start before {', '.join(sorted(missing))} exists"


def test_the_check_sees_a_missing_edge() -> None:
    """The same walk over a resource without its depends_on finds the hole."""
    body = dict(_resources()["null_resource.swarm_join"])
    body.pop("depends_on")
    assert SSH_RULES - _reaches_from(body) == SSH_RULES


@pytest.mark.parametrize("node", ["aws_instance.swarm_manager", "aws_instance.swarm_worker"])
def test_instances_carry_no_ssh_step(node: str) -> None:
    # An instance's own provisioner would run while the rules may not exist yet.
    assert not _uses_ssh(_resources()[node])


# --- the graph ----------------------------------------------------------------------------


@cache
def _blocks() -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    for path in sorted(AWS.glob("*.tf")):
        with path.open() as handle:
            for kind, entries in hcl2.load(handle).items():
                merged.setdefault(kind, []).extend(entries)
    return merged


@cache
def _resources() -> dict[str, dict[str, Any]]:
    found = {}
    for block in _blocks().get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                found[f"{kind.strip(chr(34))}.{name.strip(chr(34))}"] = body
    return found


@cache
def _locals() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in _blocks().get("locals", []):
        merged.update(block)
    return merged


def _uses_ssh(body: dict[str, Any]) -> bool:
    kinds = {kind.strip('"') for step in body.get("provisioner", []) for kind in step}
    return bool(kinds & SSH_PROVISIONERS) or "connection" in body


def _reaches(address: str) -> set[str]:
    return _reaches_from(_resources()[address])


def _reaches_from(body: dict[str, Any]) -> set[str]:
    """Every resource that must exist before ``body``'s resource is created."""
    seen: set[str] = set()
    todo = _references(body)
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        if ref.startswith("local."):
            todo |= _references(_locals().get(ref.removeprefix("local."), ""))
        elif ref in _resources():
            todo |= _references(_resources()[ref])
    return {ref for ref in seen if not ref.startswith("local.")}


def _references(value: Any) -> set[str]:
    return set(REFERENCE.findall(str(value)))
