"""docs/iam/*.json grant each job what it calls, and nothing more (docs/iam/README.md).

What a job calls comes from three places, each read here rather than trusted:
- swarmforge's own boto3 calls, found with ``ast`` in swarmforge/ (every method
  called on a client made by ``client("ec2"|"s3"|"ssm"|"sts"|"dynamodb", ...)``,
  paginators and waiters included), mapped to IAM actions and, by CODE_ACTIONS,
  to the jobs that make them;
- Terraform: every provider, resource and data source type in terraform/aws/*.tf,
  mapped by TERRAFORM_ACTIONS to what the hashicorp/aws provider calls for it,
  plus the S3 backend's own needs;
- Packer: the amazon plugin's documented minimal set for amazon-ebs.

A new call, resource type or job fails here until its actions are placed.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.terraform_config import blocks

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "swarmforge"
TERRAFORM_AWS = REPO / "terraform" / "aws"
PACKER_DIR = REPO / "packer"
POLICY_DIR = REPO / "docs" / "iam"

JOBS = ("bake", "apply", "rebuild", "state-bootstrap")
# A second document for the credentials of apply and rebuild: the AWS services other
# than EC2 that terraform/aws's optional parts use; one document would pass IAM's limit.
JOB_EXTRAS = {"apply": ("apply-services",), "rebuild": ("apply-services",)}
DOCUMENTS = (*JOBS, "apply-services")
SERVICES = ("ec2", "s3", "ssm", "sts", "dynamodb", "service-quotas")

# What the placeholders stand for (docs/iam/README.md); nothing else may look like one.
PLACEHOLDERS = {
    "Partition": "aws",
    "Account": "123456789012",
    "Region": "eu-west-1",
    "Cluster": "demo",
    "StateBucket": "demo-terraform-state",
    "LockTable": "demo-terraform-locks",
}
IAM_MANAGED_POLICY_LIMIT = 6144  # characters, whitespace not counted

# --- what each source needs ---------------------------------------------------------------

# The amazon plugin's "minimal set permissions necessary" (packer-plugin-amazon,
# docs/builders/index.mdx, "IAM Task or Instance Role"), for amazon-ebs without spot
# instances, vpc_filter or a temporary instance profile (test_packer_template_fits
# checks packer/ uses none of those).
PACKER_AMAZON_EBS = (
    "ec2:AttachVolume", "ec2:AuthorizeSecurityGroupIngress", "ec2:CopyImage", "ec2:CreateImage",
    "ec2:CreateKeyPair", "ec2:CreateSecurityGroup", "ec2:CreateSnapshot", "ec2:CreateTags",
    "ec2:CreateVolume", "ec2:DeleteKeyPair", "ec2:DeleteSecurityGroup", "ec2:DeleteSnapshot",
    "ec2:DeleteVolume", "ec2:DeregisterImage", "ec2:DescribeImageAttribute", "ec2:DescribeImages",
    "ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ec2:DescribeRegions",
    "ec2:DescribeSecurityGroups", "ec2:DescribeSnapshots", "ec2:DescribeSubnets",
    "ec2:DescribeTags", "ec2:DescribeVolumes", "ec2:DetachVolume", "ec2:GetPasswordData",
    "ec2:ModifyImageAttribute", "ec2:ModifyInstanceAttribute", "ec2:ModifySnapshotAttribute",
    "ec2:RegisterImage", "ec2:RunInstances", "ec2:StopInstances", "ec2:TerminateInstances",
)
# Documented, but not for what we build; each left out on purpose, with the reason.
PACKER_NOT_NEEDED = {
    "ec2:GetPasswordData": "Windows builds only (the WinRM password); ours log in over SSH",
}
# Source options that would need more than the set above (the same docs page).
PACKER_OPTIONS_NEEDING_MORE = (
    "spot_price", "spot_instance_types", "vpc_filter", "iam_instance_profile",
    "temporary_iam_instance_profile_policy_document", "kms_key_id", "region_kms_key_ids",
)

# What the hashicorp/aws provider calls to create, read, update (for the settings
# swarmforge can change: instance type, tags) and destroy each type, read off its
# source (internal/service/ec2). A type used in terraform/aws and missing here fails.
TERRAFORM_ACTIONS: dict[str, tuple[str, ...]] = {
    # Configuring the provider looks the account up.
    "provider aws": ("sts:GetCallerIdentity",),
    "resource aws_instance": (
        "ec2:RunInstances", "ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeInstances",
        "ec2:DescribeInstanceAttribute", "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceCreditSpecifications", "ec2:DescribeVolumes", "ec2:DescribeTags",
        # the root device's name, from the AMI, for root_block_device
        "ec2:DescribeImages",
        # destroy first clears DisableApiTermination; a new instance_type stops, modifies, starts
        "ec2:ModifyInstanceAttribute", "ec2:StopInstances", "ec2:StartInstances",
        "ec2:TerminateInstances",
        # the node role's instance profile (iam.tf): passed at launch; a running node
        # given one, or another, has it associated in place (apply-services.json)
        "iam:PassRole", "ec2:DescribeIamInstanceProfileAssociations",
        "ec2:AssociateIamInstanceProfile", "ec2:ReplaceIamInstanceProfileAssociation",
        "ec2:DisassociateIamInstanceProfile",
    ),
    "resource aws_security_group": (
        # creating one revokes the default allow-all egress rule; destroying it waits
        # for network interfaces that still use it
        "ec2:CreateSecurityGroup", "ec2:DescribeSecurityGroups", "ec2:RevokeSecurityGroupEgress",
        "ec2:DeleteSecurityGroup", "ec2:DescribeNetworkInterfaces", "ec2:CreateTags",
        "ec2:DeleteTags",
    ),
    "resource aws_vpc_security_group_ingress_rule": (
        "ec2:AuthorizeSecurityGroupIngress", "ec2:DescribeSecurityGroupRules",
        "ec2:ModifySecurityGroupRules", "ec2:RevokeSecurityGroupIngress", "ec2:CreateTags",
        "ec2:DeleteTags",
    ),
    "resource aws_vpc_security_group_egress_rule": (
        "ec2:AuthorizeSecurityGroupEgress", "ec2:DescribeSecurityGroupRules",
        "ec2:ModifySecurityGroupRules", "ec2:RevokeSecurityGroupEgress", "ec2:CreateTags",
        "ec2:DeleteTags",
    ),
    # Private workers' NAT gateway (create_nat_gateway). An EIP's state keeps the NAT
    # gateway's association, so destroying it disassociates first; its read asks for the
    # reverse DNS record (DescribeAddressesAttribute).
    "resource aws_eip": (
        "ec2:AllocateAddress", "ec2:DescribeAddresses", "ec2:DescribeAddressesAttribute",
        "ec2:DisassociateAddress", "ec2:ReleaseAddress", "ec2:CreateTags", "ec2:DeleteTags",
    ),
    "resource aws_nat_gateway": (
        "ec2:CreateNatGateway", "ec2:DescribeNatGateways", "ec2:DeleteNatGateway",
        "ec2:CreateTags", "ec2:DeleteTags",
    ),
    # reading routes looks up the network interfaces they lead to
    "resource aws_route_table": (
        "ec2:CreateRouteTable", "ec2:DescribeRouteTables", "ec2:DescribeNetworkInterfaces",
        "ec2:DeleteRouteTable", "ec2:CreateTags", "ec2:DeleteTags",
    ),
    "resource aws_route": (
        "ec2:CreateRoute", "ec2:DescribeRouteTables", "ec2:ReplaceRoute", "ec2:DeleteRoute",
    ),
    "resource aws_route_table_association": (
        "ec2:AssociateRouteTable", "ec2:DescribeRouteTables",
        "ec2:ReplaceRouteTableAssociation", "ec2:DisassociateRouteTable",
    ),
    # The ingress NLB (ingress.tf). Creating the first load balancer of an account makes
    # ELB's service-linked role; the NLB's read looks up its capacity reservation.
    "resource aws_lb": (
        "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:DescribeCapacityReservation",
        "elasticloadbalancing:SetSecurityGroups", "elasticloadbalancing:SetSubnets",
        "elasticloadbalancing:DeleteLoadBalancer", "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DescribeTags",
        "iam:CreateServiceLinkedRole",
    ),
    "resource aws_lb_listener": (
        "elasticloadbalancing:CreateListener", "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:DescribeListenerAttributes", "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteListener", "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DescribeTags",
    ),
    # creating one sets its attributes (deregistration_delay) with a second call
    "resource aws_lb_target_group": (
        "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:AddTags",
        "elasticloadbalancing:RemoveTags", "elasticloadbalancing:DescribeTags",
    ),
    "resource aws_lb_target_group_attachment": (
        "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DescribeTargetHealth",
        "elasticloadbalancing:DeregisterTargets",
    ),
    # The nodes' role (iam.tf): its read lists its policies; destroying it first takes
    # it out of its instance profiles.
    "resource aws_iam_role": (
        "iam:CreateRole", "iam:GetRole", "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
        "iam:UpdateAssumeRolePolicy", "iam:UpdateRoleDescription", "iam:TagRole", "iam:UntagRole",
        "iam:ListInstanceProfilesForRole", "iam:RemoveRoleFromInstanceProfile", "iam:DeleteRole",
    ),
    "resource aws_iam_instance_profile": (
        "iam:CreateInstanceProfile", "iam:GetInstanceProfile", "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile", "iam:UntagInstanceProfile",
        "iam:DeleteInstanceProfile",
    ),
    "resource aws_iam_role_policy_attachment": (
        "iam:AttachRolePolicy", "iam:ListAttachedRolePolicies", "iam:DetachRolePolicy",
    ),
    "resource aws_iam_role_policy": ("iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"),
    "data aws_iam_policy_document": (),  # rendered by the provider, no call
    # Container logs (logs.tf)
    "resource aws_cloudwatch_log_group": (
        "logs:CreateLogGroup", "logs:DescribeLogGroups", "logs:ListTagsForResource",
        "logs:PutRetentionPolicy", "logs:DeleteRetentionPolicy", "logs:AssociateKmsKey",
        "logs:DisassociateKmsKey", "logs:TagResource", "logs:UntagResource", "logs:DeleteLogGroup",
    ),
    # Shared volumes (efs.tf). The first file system of an account makes EFS's
    # service-linked role; a mount target is a network interface EFS makes with the
    # caller's rights (CreateMountTarget's documented EC2 permissions).
    "resource aws_efs_file_system": (
        "elasticfilesystem:CreateFileSystem", "elasticfilesystem:DescribeFileSystems",
        "elasticfilesystem:DescribeLifecycleConfiguration", "elasticfilesystem:TagResource",
        "elasticfilesystem:UntagResource", "elasticfilesystem:DeleteFileSystem",
        "iam:CreateServiceLinkedRole",
    ),
    "resource aws_efs_mount_target": (
        "elasticfilesystem:CreateMountTarget", "elasticfilesystem:DescribeMountTargets",
        "elasticfilesystem:DescribeMountTargetSecurityGroups",
        "elasticfilesystem:ModifyMountTargetSecurityGroups", "elasticfilesystem:DeleteMountTarget",
        "ec2:DescribeSubnets", "ec2:DescribeNetworkInterfaces", "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
    ),
    # hashicorp/null (the swarm step, join.tf) calls no AWS API
    "resource null_resource": (),
    # the VPC's DNS attributes and its main route table are read too
    "data aws_vpc": ("ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeRouteTables"),
    "data aws_subnets": ("ec2:DescribeSubnets",),
    "data aws_ec2_instance_type_offerings": ("ec2:DescribeInstanceTypeOfferings",),
    "data aws_availability_zones": ("ec2:DescribeAvailabilityZones",),
    "data aws_partition": (),  # answered from the region, no call
    "data aws_region": (),
    "data aws_caller_identity": ("sts:GetCallerIdentity",),
}
# Terraform's S3 backend (>= 1.10, use_lockfile): list the bucket, read and write
# the state object, and create, read and delete the lock file beside it.
S3_BACKEND = ("s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject")

# Each IAM action swarmforge's own code calls, and the jobs whose runs call it.
CODE_ACTIONS: dict[str, frozenset[str]] = {
    "sts:GetCallerIdentity": frozenset({"apply", "rebuild", "state-bootstrap"}),
    "ec2:DescribeRegions": frozenset({"apply", "rebuild"}),
    "ec2:DescribeKeyPairs": frozenset({"apply", "rebuild"}),
    "ec2:DescribeInstances": frozenset({"apply", "rebuild"}),  # bastion, node images, AMIs in use
    "ec2:GetConsoleOutput": frozenset({"apply", "rebuild"}),  # host keys, pinned before joins
    # status/roll: the root volume's KMS key, as drift, when root_volume_kms_key_id is set
    "ec2:DescribeVolumes": frozenset({"apply", "rebuild"}),
    "ec2:DescribeImages": frozenset({"bake", "apply", "rebuild"}),
    # apply's preflight: the vCPU quotas against the instance types (targets/aws/quotas.py);
    # rebuild's policy is bake's plus apply's
    "ec2:DescribeInstanceTypes": frozenset({"apply", "rebuild"}),
    "servicequotas:GetServiceQuota": frozenset({"apply", "rebuild"}),
    # the overlay address pool, outside the VPC's networks (targets/aws/address_pool.py)
    "ec2:DescribeVpcs": frozenset({"apply", "rebuild"}),
    "ec2:CreateTags": frozenset({"rebuild"}),  # stamps the inputs digest on a new AMI
    "ec2:DeregisterImage": frozenset({"rebuild"}),  # pruning (also `invoke prune-amis`)
    "ec2:DeleteSnapshot": frozenset({"rebuild"}),
    "ec2:DescribeSnapshots": frozenset({"rebuild"}),  # pruning: the snapshots a prune left
    # bake: the AMI of record; apply: the unlock key (autolock), in its SecureString only
    "ssm:PutParameter": frozenset({"bake", "apply", "rebuild"}),
    # apply: the AMI of record and the unlock key; bake: reading a new AMI back until SSM has it
    "ssm:GetParameter": frozenset({"bake", "apply", "rebuild"}),
    # destroy (and `invoke unlock-key --disable`): the unlock key goes with the swarm
    "ssm:DeleteParameter": frozenset({"apply", "rebuild"}),
    "s3:ListBucket": frozenset({"apply", "rebuild", "state-bootstrap"}),
    "s3:GetBucketLocation": frozenset({"apply", "rebuild", "state-bootstrap"}),
    "s3:GetObject": frozenset({"apply", "rebuild"}),
    # the cluster's lock (a lease) and operation journal beside the state (targets/aws/lease.py)
    "s3:PutObject": frozenset({"apply", "rebuild"}),
    "s3:DeleteObject": frozenset({"apply", "rebuild"}),
    "s3:CreateBucket": frozenset({"state-bootstrap"}),
    "s3:GetBucketVersioning": frozenset({"state-bootstrap"}),
    "s3:PutBucketVersioning": frozenset({"state-bootstrap"}),
    # state-bootstrap: the bucket's default encryption; a backup: the key to encrypt it with
    "s3:GetEncryptionConfiguration": frozenset({"apply", "rebuild", "state-bootstrap"}),
    # a backup: retained as the bucket's object lock says, where it has one
    "s3:GetBucketObjectLockConfiguration": frozenset({"apply", "rebuild"}),
    "s3:PutEncryptionConfiguration": frozenset({"state-bootstrap"}),
    "s3:GetBucketPublicAccessBlock": frozenset({"state-bootstrap"}),
    "s3:PutBucketPublicAccessBlock": frozenset({"state-bootstrap"}),
    "s3:GetBucketPolicy": frozenset({"state-bootstrap"}),
    "s3:PutBucketPolicy": frozenset({"state-bootstrap"}),
    "dynamodb:DescribeTable": frozenset({"state-bootstrap"}),
    "dynamodb:CreateTable": frozenset({"state-bootstrap"}),
}
# What else an action needs: SSM checks that an aws:ec2:image value is an AMI the caller can see.
IMPLIED = {"ssm:PutParameter": ("ec2:DescribeImages",)}

# boto3 methods whose IAM action is not the method's name in CamelCase.
SPECIAL_METHODS = {
    "s3.head_bucket": "s3:ListBucket",
    "s3.head_object": "s3:GetObject",
    "s3.list_objects_v2": "s3:ListBucket",
    "s3.get_bucket_encryption": "s3:GetEncryptionConfiguration",
    "s3.put_bucket_encryption": "s3:PutEncryptionConfiguration",
    "s3.get_object_lock_configuration": "s3:GetBucketObjectLockConfiguration",
    "s3.get_public_access_block": "s3:GetBucketPublicAccessBlock",
    "s3.put_public_access_block": "s3:PutBucketPublicAccessBlock",
    "service-quotas.get_service_quota": "servicequotas:GetServiceQuota",  # IAM's prefix
}
WAITERS = {
    "s3.bucket_exists": "s3:ListBucket",
    "dynamodb.table_exists": "dynamodb:DescribeTable",
    "ec2.image_available": "ec2:DescribeImages",
    "ec2.instance_running": "ec2:DescribeInstances",
    "ec2.instance_terminated": "ec2:DescribeInstances",
}
NOT_API_CALLS = {"get_paginator", "get_waiter", "can_paginate", "close", "generate_presigned_url"}

# A "*" resource without a condition is fine only for actions AWS cannot scope to a
# resource (reads), and for these statements, each with its reason.
UNSCOPED_READS = ("ec2:Describe*", "sts:GetCallerIdentity", "elasticloadbalancing:Describe*")
UNSCOPED_STATEMENTS = {
    "PackerBuild": "Packer's temporary key pair, security group, volumes and snapshots have "
                   "names and tags unknown in advance, and AMI copies land in the ami_regions",
}


# --- swarmforge's boto3 calls -----------------------------------------------------------


def boto3_calls(root: Path = PACKAGE) -> dict[str, list[str]]:
    """{IAM action: [where it is called]} for every boto3 call in the package under ``root``."""
    trees = {path: ast.parse(path.read_text(), filename=str(path))
             for path in sorted(root.rglob("*.py"))}
    bindings = _client_bindings(trees)
    found: dict[str, list[str]] = {}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            service = _service_of(node.func.value, bindings)
            if service is None:
                continue
            for action in _actions(service, node.func.attr, node):
                found.setdefault(action, []).append(f"{_shown(path)}:{node.lineno}")
    return found


def _client_bindings(trees: Mapping[Path, ast.AST]) -> dict[str, str]:
    """Names (variables and attributes) that hold a client: ``ec2 = client("ec2", ...)``, and
    the service names themselves, which is what our helpers call their client parameters."""
    bindings = {service: service for service in SERVICES}
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                service = _client_call(node.value)
                name = _terminal_name(node.targets[0])
                if service and name:
                    assert bindings.get(name, service) == service, \
                        f"{path}:{node.lineno}: {name} holds a {service} client here, a " \
                        f"{bindings[name]} one elsewhere: give one of them another name"
                    bindings[name] = service
    return bindings


def _client_call(node: ast.AST) -> str | None:
    """The service of ``client("svc", ...)``, else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "client":
        first = node.args[0] if node.args else None
        assert isinstance(first, ast.Constant) and first.value in SERVICES, (
            f"line {node.lineno}: client() with {ast.unparse(first) if first else 'no service'}: "
            f"name one of {SERVICES} literally, and add a new service to this test")
        return str(first.value)
    return None


def _terminal_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _service_of(receiver: ast.AST, bindings: Mapping[str, str]) -> str | None:
    direct = _client_call(receiver)
    if direct:
        return direct
    name = _terminal_name(receiver)
    return bindings.get(name) if name else None


def _actions(service: str, method: str, call: ast.Call) -> Iterator[str]:
    if method in ("get_paginator", "get_waiter"):
        first = call.args[0] if call.args else None
        assert isinstance(first, ast.Constant) and isinstance(first.value, str), \
            f"line {call.lineno}: {method}() with a name this test cannot read"
        if method == "get_paginator":
            yield _action(service, first.value)
        else:
            key = f"{service}.{first.value}"
            assert key in WAITERS, f"line {call.lineno}: waiter {key}: add what it calls to WAITERS"
            yield WAITERS[key]
    elif method not in NOT_API_CALLS:
        yield _action(service, method)


def _action(service: str, method: str) -> str:
    special = SPECIAL_METHODS.get(f"{service}.{method}")
    return special or f"{service}:" + "".join(part.capitalize() for part in method.split("_"))


# --- Terraform's and Packer's ---------------------------------------------------------------


def terraform_blocks() -> dict[str, list[Any]]:
    return blocks(TERRAFORM_AWS)


def terraform_types() -> set[str]:
    """"resource aws_instance", "data aws_vpc", "provider aws", ... as used in terraform/aws."""
    blocks = terraform_blocks()
    used = {f"{kind} {_unquote(name)}" for kind in ("resource", "data", "provider")
            for block in blocks.get(kind, []) for name in block if not name.startswith("__")}
    return used


def s3_backend() -> bool:
    return any("s3" in {_unquote(k) for k in backend}
               for block in terraform_blocks().get("terraform", [])
               for backend in block.get("backend", []))


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if REPO in path.parents else str(path)


def _unquote(text: str) -> str:
    return text.strip('"')


def packer_sources() -> dict[str, dict[str, Any]]:
    """{"amazon-ebs.ubuntu_docker": its settings} over packer/*.pkr.hcl (not packer/local)."""
    sources = {}
    for path in sorted(PACKER_DIR.glob("*.pkr.hcl")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("source", []):
                for kind, named in block.items():
                    for name, body in named.items() if not kind.startswith("__") else ():
                        if not name.startswith("__"):
                            sources[f"{_unquote(kind)}.{_unquote(name)}"] = body
    return sources


# --- what each job needs ---------------------------------------------------------------------


_SPELLING: dict[str, str] = {}  # lower case -> as AWS writes it, for messages


def required(job: str) -> dict[str, set[str]]:
    """{action (lower case): why} for ``job``."""
    needs: dict[str, set[str]] = {}

    def need(action: str, why: str) -> None:
        needs.setdefault(action.lower(), set()).add(why)
        _SPELLING.setdefault(action.lower(), action)

    if job in ("bake", "rebuild"):
        for action in PACKER_AMAZON_EBS:
            if action not in PACKER_NOT_NEEDED:
                need(action, "packer amazon-ebs")
    if job in ("apply", "rebuild"):
        for used in sorted(terraform_types()):
            for action in TERRAFORM_ACTIONS.get(used, ()):
                need(action, f"terraform {used}")
        if s3_backend():
            for action in S3_BACKEND:
                need(action, "terraform S3 backend")
    for action, where in code_calls().items():
        if job in CODE_ACTIONS.get(action, ()):
            need(action, f"swarmforge {where[0]}")
            for implied in IMPLIED.get(action, ()):
                need(implied, f"{action} at {where[0]}")
    return needs


@cache
def code_calls() -> dict[str, list[str]]:
    return boto3_calls()


# --- the policies --------------------------------------------------------------------------


@cache
def policy_text(job: str) -> str:
    return (POLICY_DIR / f"{job}.json").read_text()


def policy(job: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(policy_text(job))
    return document


def document_statements(name: str) -> list[dict[str, Any]]:
    found = policy(name)["Statement"]
    return found if isinstance(found, list) else [found]


def statements(job: str) -> list[dict[str, Any]]:
    """The statements of ``job``'s document, then of the documents attached with it."""
    return [s for name in (job, *JOB_EXTRAS.get(job, ())) for s in document_statements(name)]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed(job: str) -> set[str]:
    """Every action an Allow statement of ``job``'s policy names, lower case."""
    return {action.lower() for s in statements(job) if s["Effect"] == "Allow"
            for action in _listed(s["Action"])}


def _granted(action: str, granted: set[str]) -> bool:
    return any(fnmatchcase(action, pattern) for pattern in granted)


def _substituted(text: str) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: PLACEHOLDERS[m.group(1)], text)


# --- tests --------------------------------------------------------------------------------------


def test_the_code_calls_are_found() -> None:
    """Not vacuous: the calls we know of are seen, through clients held every way we hold them."""
    found = code_calls()
    assert {"ec2:DescribeImages", "ec2:DescribeInstances", "ec2:DeregisterImage",
            "ssm:PutParameter", "ssm:GetParameter", "sts:GetCallerIdentity", "s3:ListBucket",
            "s3:GetObject", "s3:PutBucketPolicy", "dynamodb:CreateTable"} <= set(found), found


def test_every_code_call_belongs_to_jobs() -> None:
    found = code_calls()
    unplaced = [f"{action} (at {', '.join(where)})" for action, where in sorted(found.items())
                if action not in CODE_ACTIONS]
    stale = sorted(set(CODE_ACTIONS) - set(found))
    assert not unplaced, ("boto3 calls with no job: add each to CODE_ACTIONS with the jobs that "
                          "make it, and to those policies in docs/iam/:\n  " + "\n  ".join(unplaced))
    assert not stale, f"CODE_ACTIONS lists actions nothing calls any more: {stale}"
    assert all(jobs <= set(JOBS) for jobs in CODE_ACTIONS.values())


def test_every_terraform_type_has_its_actions() -> None:
    used = terraform_types()
    assert "resource aws_instance" in used and "provider aws" in used, used  # not vacuous
    missing = sorted(used - set(TERRAFORM_ACTIONS))
    assert not missing, ("terraform/aws uses types with no actions in TERRAFORM_ACTIONS (add what "
                         f"the provider calls for them, then the policies): {missing}")
    assert s3_backend(), "terraform/aws keeps its state in S3: the apply policy counts on it"


@pytest.mark.parametrize("job", JOBS)
def test_the_policy_covers_what_the_job_calls(job: str) -> None:
    granted = allowed(job)
    missing = [f"{_SPELLING[action]}: {', '.join(sorted(why))}"
               for action, why in sorted(required(job).items())
               if not _granted(action, granted)]
    assert not missing, f"docs/iam/{job}.json lacks:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize("job", JOBS)
def test_the_policy_grants_nothing_more(job: str) -> None:
    needed = required(job)
    extra = sorted(action for action in allowed(job) if action not in needed)
    assert not extra, (f"docs/iam/{job}.json grants what no part of the {job} job calls "
                       f"(least privilege: remove it, or say in this test who needs it): {extra}")


@pytest.mark.parametrize("job", JOBS)
def test_no_wildcard_action(job: str) -> None:
    for statement in statements(job):
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        for action in _listed(statement["Action"]):
            assert action != "*" and not action.endswith(":*"), \
                f"docs/iam/{job}.json, {statement.get('Sid')}: {action!r} grants a whole service"
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), \
                f"docs/iam/{job}.json, {statement.get('Sid')}: {action!r} is no plain action"


@pytest.mark.parametrize("job", DOCUMENTS)
def test_resources_name_no_partition_and_use_known_placeholders(job: str) -> None:
    text = policy_text(job)
    assert "arn:aws:" not in text, f"docs/iam/{job}.json: write arn:${{Partition}}:, not arn:aws:"
    unknown = set(re.findall(r"\$\{([^}]*)\}", text)) - set(PLACEHOLDERS)
    assert not unknown, f"docs/iam/{job}.json: unknown placeholders {unknown} (see docs/iam/README.md)"
    for statement in statements(job):
        for resource in _listed(statement["Resource"]):
            assert resource == "*" or resource.startswith("arn:${Partition}:"), (job, resource)
    filled = json.loads(_substituted(text))  # still a valid policy once filled in
    for statement in filled["Statement"]:
        for resource in _listed(statement["Resource"]):
            assert resource == "*" or re.fullmatch(r"arn:aws:[a-z0-9-]+:[a-z0-9-*]*:(\d{12}|\*)?:\S+",
                                                   resource), (job, resource)


@pytest.mark.parametrize("job", JOBS)
def test_star_resources_are_scoped_by_conditions(job: str) -> None:
    for statement in statements(job):
        if "*" not in _listed(statement["Resource"]) or statement.get("Condition"):
            continue
        sid = statement.get("Sid", "")
        reads = all(any(fnmatchcase(a, p) for p in UNSCOPED_READS) for a in _listed(statement["Action"]))
        assert reads or sid in UNSCOPED_STATEMENTS, (
            f"docs/iam/{job}.json, {sid or 'a statement'}: Resource \"*\" with no Condition: name "
            "the resources, add a condition, or give the reason in UNSCOPED_STATEMENTS")


@pytest.mark.parametrize("job", DOCUMENTS)
def test_the_policy_is_well_formed_and_fits_iam(job: str) -> None:
    document = policy(job)
    assert document["Version"] == "2012-10-17"
    sids = [s.get("Sid") for s in statements(job)]
    assert all(sids) and len(set(sids)) == len(sids), f"docs/iam/{job}.json: Sids missing or repeated"
    assert all(s["Effect"] in ("Allow", "Deny") for s in statements(job))
    size = len("".join(policy_text(job).split()))
    assert size <= IAM_MANAGED_POLICY_LIMIT, f"docs/iam/{job}.json: {size} characters"


def test_rebuild_is_bake_plus_apply() -> None:
    """The scheduled rebuild bakes, then rolls: the two policies, kept in step by this test."""
    assert document_statements("rebuild") == document_statements("bake") + document_statements("apply")
    assert not {s["Sid"] for s in statements("bake")} & {s["Sid"] for s in statements("apply")}


def test_no_other_policy_or_job() -> None:
    assert {path.stem for path in POLICY_DIR.glob("*.json")} == set(DOCUMENTS)


def test_the_conditions_match_the_tags_we_set() -> None:
    """apply's conditions need terraform/aws's Cluster tag on everything; bake's, Packer's
    swarmforge:cluster run tag on its build instance."""
    provider = next(body for block in terraform_blocks()["provider"] for name, body in block.items()
                    if _unquote(name) == "aws")
    assert re.search(r"\bCluster\s*=\s*var\.cluster_name\b", str(provider["default_tags"])), provider
    apply_conditions = json.dumps([s.get("Condition") for s in statements("apply")])
    assert "aws:ResourceTag/Cluster" in apply_conditions
    source = packer_sources()["amazon-ebs.ubuntu_docker"]
    run_tags = {_unquote(key): value for key, value in source["run_tags"].items()}
    assert run_tags.get("swarmforge:cluster") == "${var.cluster}", run_tags
    assert "aws:ResourceTag/swarmforge:cluster" in json.dumps(statements("bake"))


def test_the_policy_names_match_the_code() -> None:
    from swarmforge.settings import Settings
    from swarmforge.targets.aws.amis import parameter_name

    cluster = PLACEHOLDERS["Cluster"]
    apply = _substituted(policy_text("apply"))
    assert f":parameter{parameter_name(cluster)}\"" in apply
    from swarmforge.targets.aws.unlock_key_parameter import parameter_name as unlock_key_name
    assert f":parameter{unlock_key_name(cluster)}\"" in apply
    assert f"/{Settings(cluster=cluster).state_key}\"" in apply
    assert f"/{Settings(cluster=cluster).state_key}.tflock\"" in apply
    from swarmforge.targets.aws.lease import JOURNAL_SUFFIX, LOCK_SUFFIX
    for suffix in (LOCK_SUFFIX, JOURNAL_SUFFIX):
        assert f"/{Settings(cluster=cluster).state_key}{suffix}\"" in apply


def test_packer_template_fits_the_bake_policy() -> None:
    sources = packer_sources()
    assert set(sources) == {"amazon-ebs.ubuntu_docker"}, (
        "packer/ builds with other sources: PACKER_AMAZON_EBS is the amazon-ebs set only")
    source = sources["amazon-ebs.ubuntu_docker"]
    needing_more = sorted(set(source) & set(PACKER_OPTIONS_NEEDING_MORE))
    if "session_manager" in str(source.get("ssh_interface", "")):
        needing_more.append("ssh_interface = session_manager")
    assert not needing_more, f"packer/ sets {needing_more}: add what they need to bake.json and here"


def test_terraform_aws_names_no_partition() -> None:
    """ARNs in terraform/aws come from data.aws_partition, never a literal arn:aws:."""
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in sorted(TERRAFORM_AWS.glob("*.tf"))
             for number, line in enumerate(path.read_text().splitlines(), start=1)
             if "arn:aws:" in line]
    assert not found, "literal arn:aws: in terraform/aws (use data.aws_partition):\n  " + "\n  ".join(found)


# --- the call finder itself -------------------------------------------------------------------


def test_the_call_finder_sees_every_way_of_holding_a_client(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "class Store:\n"
        "    def __init__(self):\n"
        "        self.images = client('ec2', 'r')\n"
        "    def go(self, s3, other):\n"
        "        self.images.describe_images()\n"
        "        s3.head_bucket(Bucket='b')\n"
        "        s3.get_waiter('bucket_exists').wait(Bucket='b')\n"
        "        client('ssm', 'r').put_parameter(Name='n')\n"
        "        self.images.get_paginator('describe_instances').paginate()\n"
        "        other.delete_everything()\n"
    )
    found = boto3_calls(tmp_path)
    assert set(found) == {"ec2:DescribeImages", "s3:ListBucket", "ssm:PutParameter",
                          "ec2:DescribeInstances"}, found
