"""`invoke destroy` with private workers and no running manager (issue 16, point 4).

Private workers are reached through a manager (ssh_bastion_host), which the aws
target looks up among the running managers; with none running, destroy passed no
bastion, and a validation of ssh_bastion_host refused the plan: Terraform checks
variable validations when it destroys too. The requirement is a precondition of the
swarm step (join.tf) now, which Terraform checks only for steps it creates or
keeps. Shown on terraform/aws read with python-hcl2 and with a real Terraform on
terraform/aws/variables.tf beside stand-in nodes (tests/bastion_stand_in.py); the
aws target's own look-up on moto is in tests/test_aws_target.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from swarmforge.terraform import TerraformError
from tests.bastion_stand_in import AWS, bastion_stand_in, join_precondition
from tests.terraform_config import blocks

VARIABLES = {
    "cluster_name": "demo", "ssh_private_key_path": "/dev/null",
    "swarm_ami_id": "ami-0123456789abcdef0", "key_name": "swarm",
    "allowed_ssh_cidrs": '["203.0.113.7/32"]', "worker_public_ip": "false",
    "swarm_init": "false", "swarm_managers": "1", "swarm_workers": "2",
}
BASTION = {"ssh_bastion_host": "203.0.113.10"}


def test_the_bastion_is_required_by_the_swarm_step_not_by_a_variable() -> None:
    condition, message = join_precondition()
    assert [part.strip() for part in condition.split("||")] == [
        "var.worker_public_ip", 'each.value.role == "manager"', 'var.ssh_bastion_host != ""']
    assert "need ssh_bastion_host" in message
    validations = [(name, validation) for block in blocks(AWS)["variable"]
                   for name, body in block.items() if isinstance(body, dict)
                   for validation in body.get("validation", [])]
    assert validations  # terraform/aws validates its variables: each one is checked
    for name, validation in validations:
        # A validation is checked by destroy too: none may ask for a bastion.
        asks = {"var.worker_public_ip", "var.ssh_bastion_host"}
        assert not asks <= set(re.findall(r"var\.\w+", validation["condition"])), name


def test_destroy_needs_no_bastion_and_apply_still_does(tmp_path: Path) -> None:
    terraform = bastion_stand_in(tmp_path / "stand-in")
    terraform.apply({**VARIABLES, **BASTION}, {})
    assert len(terraform.addresses()) == 6  # 1 manager, 2 workers and their 3 steps

    # No manager runs to be the bastion: a plan that keeps the workers' steps is refused...
    with pytest.raises(TerraformError, match="need ssh_bastion_host"):
        terraform.plan(VARIABLES, {})
    # ...and destroy, which keeps nothing, goes through.
    terraform.apply(VARIABLES, {}, destroy=True)
    assert terraform.addresses() == []


def test_phase_one_makes_private_workers_before_any_manager_can_be_the_bastion(
        tmp_path: Path) -> None:
    """Only the first manager's step exists in phase 1 (swarm_init): no bastion needed."""
    terraform = bastion_stand_in(tmp_path / "stand-in")

    terraform.apply({**VARIABLES, "swarm_init": "true"}, {})

    assert "terraform_data.swarm_worker[1]" in terraform.addresses()
    assert not [a for a in terraform.addresses() if a.startswith('terraform_data.swarm_join["w')]
