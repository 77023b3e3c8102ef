"""terraform/aws read as Terraform's graph walk meets it: a step that needs SSH never starts
before the rules that open SSH exist.

The SSH ingress rules are separate resources that an instance does not reference,
so nothing but an explicit edge (a reference or ``depends_on``) orders them
before a provisioner. Without one, `-target` or plain parallelism starts the
provisioner first, and it times out on a closed port 22.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.terraform_config import TERRAFORM, labelled, locals_of

AWS = TERRAFORM / "aws"
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


def _resources() -> dict[str, dict[str, Any]]:
    return labelled(AWS, "resource")


def _locals() -> dict[str, Any]:
    return locals_of(AWS)


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


# --- what a change of allowed_ssh_cidrs touches --------------------------------------------

#: Anything a value can come from: variables, locals, resources and data sources.
INPUT = re.compile(r"\b((?:data\.)?aws_[a-z0-9_]+\.[a-z0-9_]+|null_resource\.[a-z0-9_]+"
                   r"|local\.[a-z0-9_]+|var\.[a-z0-9_]+)")


@pytest.mark.parametrize("node", ["aws_instance.swarm_manager", "aws_instance.swarm_worker"])
def test_the_ssh_networks_never_reach_an_instance(node: str) -> None:
    """A new allowed_ssh_cidrs adds and removes rules, and never updates or replaces a node:
    no instance takes anything from it, directly or through a local, a data source or
    another resource (the security group it is in holds no rule inline)."""
    inputs = _inputs_from(_resources()[node])

    assert "aws_security_group.swarm" in inputs  # not vacuous: the walk goes through the group
    assert "var.allowed_ssh_cidrs" not in inputs, f"{node} depends on allowed_ssh_cidrs"


def test_the_ssh_rules_are_one_resource_per_network() -> None:
    """for_each by CIDR: adding a network creates its rule, removing one deletes its rule,
    and the other rules stay as they are (a list by index would shift them all)."""
    rule = _resources()["aws_vpc_security_group_ingress_rule.ssh"]

    assert rule["for_each"] == "${toset(var.allowed_ssh_cidrs)}"
    assert rule["cidr_ipv4"] == "${each.value}"
    group = _resources()["aws_security_group.swarm"]
    assert not {"ingress", "egress"} & set(group), "inline rules would make the group change"


def test_the_input_walk_sees_an_indirect_use() -> None:
    """The same walk finds allowed_ssh_cidrs behind a resource the instance would reference."""
    body = {**_resources()["aws_instance.swarm_worker"],
            "user_data": "${jsonencode(aws_vpc_security_group_ingress_rule.ssh)}"}

    assert "var.allowed_ssh_cidrs" in _inputs_from(body)


def _inputs_from(body: dict[str, Any]) -> set[str]:
    """Every variable, local, resource and data source that ``body``'s values come from."""
    seen: set[str] = set()
    todo = set(INPUT.findall(str(body)))
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        todo |= set(INPUT.findall(str(_definition(ref))))
    return seen


def _definition(ref: str) -> Any:
    if ref.startswith("local."):
        return _locals().get(ref.removeprefix("local."), "")
    if ref.startswith("data."):
        return _data_sources().get(ref.removeprefix("data."), "")
    return _resources().get(ref, "")  # a variable has no inputs of its own


def _data_sources() -> dict[str, dict[str, Any]]:
    return labelled(AWS, "data")
