"""The static checks the field runs on our Terraform: `terraform fmt` and checkov."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from swarmforge.tools import find_terraform

REPO = Path(__file__).resolve().parent.parent
CHECKOV = REPO / ".tools/checkov-venv/bin/checkov"


def test_terraform_is_formatted() -> None:
    terraform, _ = find_terraform(None, SpecifierSet(">=1.0"), "terraform/")

    fmt = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(REPO / "terraform")],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull},
        timeout=60,
    )

    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# terraform/aws cannot be planned here (no AWS provider offline), but its
# variables.tf alone needs no provider: Terraform itself runs the validations.
VALID_AWS_VARS = [
    "cluster_name=demo",
    "ssh_private_key_path=/dev/null",
    "swarm_ami_id=ami-0123456789abcdef0",
    "key_name=swarm",
    'allowed_ssh_cidrs=["203.0.113.7/32"]',
]
# Everything a real account sets, with private workers behind a NAT gateway.
REAL_ACCOUNT = [
    "vpc_id=vpc-0123456789abcdef0",
    'subnet_ids=["subnet-0123456789abcdef0","subnet-0123456789abcdef1"]',
    'worker_subnet_ids=["subnet-0123456789abcdef2","subnet-0123456789abcdef3"]',
    "worker_public_ip=false",
    "ssh_bastion_host=203.0.113.10",
    "create_nat_gateway=true",
    'public_ports=[{port=443,protocol="tcp",cidr_blocks=["0.0.0.0/0"]},{port=53,protocol="udp"}]',
    "swarm_manager_instance_type=t3.small",
    "swarm_worker_instance_type=m6i.large",
    "iam_instance_profile=swarm-nodes",
    "root_volume_size=50",
    "root_volume_kms_key_id=arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    'tags={team="infra",cost-center="1234"}',
]


@pytest.mark.parametrize(
    ("override", "complaint"),
    [
        (None, None),
        ('allowed_ssh_cidrs=["0.0.0.0/0"]', "SSH must not be open to 0.0.0.0/0"),
        ("swarm_ami_id=ami-XYZ", "must be an AMI id"),
        ("swarm_managers=0", "whole number from 1 to 8"),
        ("swarm_manager_slots=[0,8,8]", "distinct whole numbers from 0 to 15"),
        ("swarm_manager_slots=[16]", "distinct whole numbers from 0 to 15"),
        ("vpc_id=vpc-0123456789abcdef0", "Set vpc_id and subnet_ids together"),
        # Private workers need a bastion only to be reached: a precondition of their swarm
        # steps (join.tf, tests/test_destroy_without_bastion.py), so destroy needs none.
        ("worker_public_ip=false", None),
        ('public_ports=[{port=4789, protocol="udp"}]', "internal ports"),
        # SSH open to the whole internet in pieces, not only as /0; overlapping
        # blocks that leave a gap are fine (the check is exact, not a size bound).
        ('allowed_ssh_cidrs=["0.0.0.0/1","128.0.0.0/1"]', "together cover the whole internet"),
        ('allowed_ssh_cidrs=["0.0.0.0/2","64.0.0.0/2","128.0.0.0/2","192.0.0.0/2"]',
         "together cover the whole internet"),
        ('allowed_ssh_cidrs=["0.0.0.0/1","0.0.0.1/1","128.0.0.0/1"]',
         "together cover the whole internet"),  # the same block spelt twice counts once
        ('allowed_ssh_cidrs=["0.0.0.0/1","0.0.0.0/2","64.0.0.0/2","128.0.0.0/2"]', None),
        # A real account's settings (README, "Settings for a real account").
        (REAL_ACCOUNT, None),
        ([*REAL_ACCOUNT, "private_route_table_id=rtb-0123456789abcdef0"], None),
        ("swarm_worker_instance_type=T3.Large", "must be null or an EC2 instance type"),
        ("worker_subnet_ids=[\"subnet-0123456789abcdef2\"]", "set vpc_id and subnet_ids too"),
        ("create_nat_gateway=true", "serves private workers only"),
        ([*REAL_ACCOUNT, 'worker_subnet_ids=["subnet-0123456789abcdef0"]'],
         "must be subnets of their own"),
        ("private_route_table_id=rtb-0123456789abcdef0", "set create_nat_gateway = true too"),
        ("iam_instance_profile=arn:aws:iam::123456789012:instance-profile/swarm", "not its ARN"),
        ("root_volume_kms_key_id=alias/aws/ebs", "must be null or a KMS key ARN"),
        ("root_volume_size=4", "whole number of GiB from 8 to 16384"),
        ('tags={Cluster="other"}', "must not set Name, Cluster, Role, Index or Slot"),
        ('tags={"aws:owner"="me"}', "not start with aws:"),
        # ARNs of every partition, not only arn:aws (issue 16, point 9).
        (["region=cn-north-1",
          "root_volume_kms_key_id=arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab"], None),
        (["region=us-gov-west-1",
          "root_volume_kms_key_id=arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab"],
         None),
        # The overlay pool swarmforge picks outside the VPC (point 10), and the agent (point 11).
        ("swarm_default_addr_pool=10.1.0.0/16", None),
        ("swarm_default_addr_pool=100.64.0.0/16", None),
        ("swarm_default_addr_pool=10.1.2.0/16", "must be empty or an IPv4 network from /8 to /24"),
        ("swarm_default_addr_pool=10.1.0.0/28", "must be empty or an IPv4 network from /8 to /24"),
        ("swarm_default_addr_pool=fd00::/48", "must be empty or an IPv4 network from /8 to /24"),
        ("swarm_default_addr_pool=10.1.0.0", "must be empty or an IPv4 network from /8 to /24"),
        ("ssh_use_agent=true", None),
    ],
)
def test_aws_variables_refuse_unsafe_values(
    tmp_path: Path, override: str | list[str] | None, complaint: str | None
) -> None:
    terraform, _ = find_terraform(None, SpecifierSet(">=1.0"), "terraform/")
    shutil.copy(REPO / "terraform/aws/variables.tf", tmp_path)
    overrides = [override] if isinstance(override, str) else list(override or [])
    arguments = [f"-var={value}" for value in [*VALID_AWS_VARS, *overrides]]

    plan = subprocess.run(
        [terraform, "plan", "-input=false", "-no-color", *arguments],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull},
        timeout=60,
    )

    if complaint is None:
        assert plan.returncode == 0, plan.stdout + plan.stderr
    else:
        assert plan.returncode != 0
        assert complaint in " ".join(plan.stderr.replace("│", " ").split())


def test_checkov_passes_on_the_aws_config() -> None:
    if not CHECKOV.exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run checkov: {CHECKOV} is absent")
        pytest.skip(f"checkov is installed by .ci/run into its own venv ({CHECKOV} is absent)")

    scan = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(REPO / "terraform/aws"),
            "--framework",
            "terraform",
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        # Offline: without this, checkov tracebacks trying to fetch its guideline mapping.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )

    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert "Failed checks: 0" in scan.stdout
