"""No settings change stops or replaces running nodes all at once (issue 16, point 2).

hashicorp/aws applies a change to an ``aws_instance`` argument in one of three
ways, and applies it to every instance of a ``count`` in parallel: in place (an API
call on the running instance), by stop -> modify -> start (the swarm loses quorum
and every public address changes), or by replacement (ForceNew: every node destroyed
and made anew). CHANGE is that reading, argument by argument, of the provider's
documentation (registry.terraform.io/providers/hashicorp/aws/latest/docs/resources/instance:
"Updates to this field will trigger a stop/start of the EC2 instance" for
``instance_type`` and ``user_data``; "Modifying the ``encrypted`` or ``kms_key_id``
settings of the ``root_block_device`` requires resource replacement") and of its
resource code (internal/service/ec2/ec2_instance.go: ForceNew in the schema;
``resourceInstanceUpdate`` calls ``modifyInstanceAttributeWithStopStart`` for the
instance type and user data only; ModifyVolume for the root volume's size and type;
ReplaceIamInstanceProfileAssociation, Monitor/UnmonitorInstances,
ModifyInstanceMetadataOptions and ModifyNetworkInterfaceAttribute on a running
instance).

The tests read terraform/aws with python-hcl2: every argument our nodes set is in
CHANGE (a new one fails until it is read against the provider), every argument that
would stop or replace a node and that a setting can change is in ``ignore_changes``
(``invoke status`` shows the drift, ``invoke roll`` replaces nodes one at a time) or
is refused by apply's removal guard, and nothing that changes in place is ignored
(so those settings still reach running nodes).
"""

from __future__ import annotations

from typing import Any

import pytest

from swarmforge.apply_guards import refuse_removals
from swarmforge.errors import QuorumError
from swarmforge.terraform_output import Plan, PlannedChange
from tests.terraform_config import TERRAFORM, labelled

IN_PLACE, STOP_START, REPLACE = "in place", "stop/start", "replace"

CHANGE = {
    "ami": REPLACE,
    "instance_type": STOP_START,
    "user_data": STOP_START,  # REPLACE with user_data_replace_on_change
    "key_name": REPLACE,
    "subnet_id": REPLACE,
    "associate_public_ip_address": REPLACE,
    "vpc_security_group_ids": IN_PLACE,  # ModifyNetworkInterfaceAttribute
    "iam_instance_profile": IN_PLACE,  # ReplaceIamInstanceProfileAssociation while running
    "monitoring": IN_PLACE,  # MonitorInstances / UnmonitorInstances
    "metadata_options.http_endpoint": IN_PLACE,  # ModifyInstanceMetadataOptions
    "metadata_options.http_tokens": IN_PLACE,
    "metadata_options.http_put_response_hop_limit": IN_PLACE,
    "root_block_device.volume_type": IN_PLACE,  # ModifyVolume, no restart
    "root_block_device.volume_size": IN_PLACE,
    "root_block_device.delete_on_termination": IN_PLACE,  # ModifyInstanceAttribute
    "root_block_device.encrypted": REPLACE,
    "root_block_device.kms_key_id": REPLACE,
    "tags": IN_PLACE,
    "volume_tags": IN_PLACE,
    # ForceNew in the schema: a worker moved to or from spot is made anew (spot.tf).
    "instance_market_options": REPLACE,
}

#: Replacing arguments left to apply's removal guard instead of ignored: a node with
#: another key pair could not be reached with the old one, so no roll could bring it.
REFUSED = {"key_name"}

NODES = ("aws_instance.swarm_manager", "aws_instance.swarm_worker")
NOT_ARGUMENTS = {"count", "lifecycle"}  # meta-arguments: Terraform's, not the provider's


def node(address: str) -> dict[str, Any]:
    return labelled(TERRAFORM / "aws", "resource")[address]


def arguments(body: dict[str, Any]) -> dict[str, Any]:
    """``{argument: value}`` of a resource body, a nested block's as ``block.argument``."""
    found: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("__") or name in NOT_ARGUMENTS:
            continue
        if name == "dynamic":  # a generated block counts as the block it generates
            found.update({label.strip('"'): blocks for label, blocks in value[0].items()})
            continue
        if isinstance(value, list) and value and isinstance(value[0], dict):  # a block
            found.update({f"{name}.{k}": v for k, v in value[0].items() if not k.startswith("__")})
        else:
            found[name] = value
    return found


def ignored(body: dict[str, Any]) -> set[str]:
    """``ignore_changes`` as argument names (``root_block_device[0].kms_key_id`` as
    ``root_block_device.kms_key_id``)."""
    listed = body["lifecycle"][0]["ignore_changes"]
    return {entry.removeprefix("${").removesuffix("}").replace("[0]", "") for entry in listed}


def is_constant(value: Any) -> bool:
    """A literal in the HCL: no setting can change it."""
    if isinstance(value, list):
        return all(is_constant(v) for v in value)
    return not (isinstance(value, str) and "${" in value)


@pytest.mark.parametrize("address", NODES)
def test_every_argument_of_a_node_is_read_against_the_provider(address: str) -> None:
    unread = set(arguments(node(address))) - set(CHANGE)
    assert not unread, f"{address}: how does hashicorp/aws apply a change to {sorted(unread)}?"


@pytest.mark.parametrize("address", NODES)
def test_no_setting_stops_or_replaces_running_nodes_in_place(address: str) -> None:
    body = node(address)
    disruptive = {name for name, value in arguments(body).items()
                  if CHANGE[name] != IN_PLACE and not is_constant(value)}
    assert disruptive - ignored(body) == REFUSED & disruptive
    # user_data is not set, but a change to it would stop every node: ignored all the same.
    assert "user_data" in ignored(body)


@pytest.mark.parametrize("address", NODES)
def test_what_changes_in_place_still_reaches_running_nodes(address: str) -> None:
    body = node(address)
    in_place = {name for name in arguments(body) if CHANGE[name] == IN_PLACE}
    assert not in_place & ignored(body)
    assert {"iam_instance_profile", "monitoring", "root_block_device.volume_size"} <= in_place


def test_a_new_key_pair_is_refused_by_the_removal_guard() -> None:
    # terraform plan -json's planned_change for a ForceNew argument: the node is replaced.
    plan = Plan((PlannedChange("aws_instance.swarm_manager[0]", "replace"),))
    with pytest.raises(QuorumError, match=r"would remove running nodes: aws_instance\.swarm_manager\[0\]"):
        refuse_removals(plan, [])
