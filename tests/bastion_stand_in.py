"""terraform/aws's variables and its swarm step's bastion precondition, on stand-in nodes.

terraform/aws cannot be planned here (no AWS provider offline), so its
variables.tf runs as it is beside a stand-in of the nodes and of
null_resource.swarm_join (terraform_data: built into Terraform, no provider to
install) that carries the lifecycle block read from join.tf with python-hcl2:
what Terraform checks is the real condition and message.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from packaging.specifiers import SpecifierSet

from swarmforge.terraform import Terraform
from swarmforge.tools import find_terraform
from tests.terraform_config import TERRAFORM, labelled

AWS = TERRAFORM / "aws"

NODES = """
locals {
  nodes = merge(
    { for i in range(var.swarm_managers) : "m${i}" => { role = "manager", index = i } },
    { for i in range(var.swarm_workers) : "w${i}" => { role = "worker", index = i } },
  )
  join_steps = var.swarm_init ? { m0 = local.nodes["m0"] } : local.nodes
}

resource "terraform_data" "swarm_manager" {
  count = var.swarm_managers
}

resource "terraform_data" "swarm_worker" {
  count = var.swarm_workers
}

resource "terraform_data" "swarm_join" {
  for_each = local.join_steps

  input = (each.value.role == "manager"
    ? terraform_data.swarm_manager[each.value.index].id
  : terraform_data.swarm_worker[each.value.index].id)

  lifecycle {
    precondition {
      condition     = CONDITION
      error_message = MESSAGE
    }
  }
}
"""


def join_precondition() -> tuple[str, str]:
    """(condition, error message) of the precondition of terraform/aws's swarm step, as HCL."""
    join = labelled(AWS, "resource")["null_resource.swarm_join"]
    (precondition,) = [p for block in join.get("lifecycle", []) for p in block["precondition"]]
    condition = precondition["condition"]
    assert condition.startswith("${") and condition.endswith("}")
    return condition[2:-1], precondition["error_message"]


def bastion_stand_in(workdir: Path) -> Terraform:
    """Terraform, initialised in ``workdir`` on terraform/aws/variables.tf and the stand-in."""
    binary, _ = find_terraform(None, SpecifierSet(">=1.10"), "terraform/aws")
    workdir.mkdir(parents=True)
    shutil.copy(AWS / "variables.tf", workdir)
    condition, message = join_precondition()
    (workdir / "stand_in.tf").write_text(
        NODES.replace("CONDITION", condition).replace("MESSAGE", message))
    terraform = Terraform(binary, workdir, env={"TF_CLI_CONFIG_FILE": os.devnull})
    terraform.init()
    return terraform
