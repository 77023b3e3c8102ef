"""The Terraform adapter against the real binary: version floor, secrets by env only, errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from swarmforge.errors import SwarmforgeError, ToolError
from swarmforge.terraform import Terraform, TerraformError, required_version
from swarmforge.tools import cli_config, find_terraform
from tests.leaks import ArgvWatcher, files_holding

TOKEN = "SWMTKN-1-" + "0123456789abcdefghij" * 3 + "-" + "klmnopqrstuvwxyz0123"

CONFIG = """
terraform {
  required_version = ">= 1.0"
}

variable "join_token" {
  type      = string
  sensitive = true
}

variable "label" {
  type = string
}

output "token_length" {
  value     = length(var.join_token)
  sensitive = true
}

output "label" {
  value = var.label
}
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "main.tf").write_text(CONFIG)
    return tmp_path


@pytest.fixture
def terraform(workdir: Path) -> Terraform:
    binary, _ = find_terraform(None, SpecifierSet(">=1.0"), "test config")
    lines: list[str] = []
    tf = Terraform(binary, workdir, env={"TF_CLI_CONFIG_FILE": str(cli_config(workdir / "rc"))},
                   progress=lines.append, log_file=workdir / "tf.log")
    tf.init()
    return tf


def test_required_version_reads_terraform_constraints(tmp_path: Path) -> None:
    (tmp_path / "versions.tf").write_text('terraform {\n  required_version = "~> 1.2, < 1.9"\n}\n')
    spec = required_version(tmp_path)
    assert "1.5.0" in spec and "1.9.0" not in spec and "1.1.0" not in spec


def test_a_terraform_below_the_config_minimum_is_refused_clearly(terraform: Terraform) -> None:
    with pytest.raises(ToolError, match=r"needs Terraform >=99.0, but .* is 1\.\d+\.\d+"):
        terraform.require(SpecifierSet(">=99.0"), "terraform/future")


def test_a_token_reaches_terraform_through_the_child_environment_only(
        terraform: Terraform, workdir: Path) -> None:
    started = time.time()
    with ArgvWatcher(interval=0.002, marker=b"label=visible") as watcher:
        terraform.apply({"label": "visible"}, {"join_token": TOKEN})
    assert terraform.outputs() == {"token_length": len(TOKEN), "label": "visible"}
    # However loaded the machine, the watch caught `terraform apply` itself running.
    assert watcher.marked > 0 and watcher.seen == []
    assert files_holding([workdir, Path("/tmp")], [TOKEN], newer_than=started) == []


def test_a_token_is_never_put_on_the_command_line(terraform: Terraform) -> None:
    with pytest.raises(SwarmforgeError, match="refusing to pass label on the command line"):
        terraform.apply({"label": TOKEN}, {"join_token": TOKEN})


def test_a_failing_command_raises_with_terraforms_own_diagnostic(terraform: Terraform) -> None:
    with pytest.raises(TerraformError) as caught:
        terraform.plan({"label": "x", "undeclared": "y"}, {"join_token": TOKEN})
    assert "terraform plan failed" in str(caught.value)
    assert "undeclared" in caught.value.output
