"""What the aws target checks before anything runs, one line per problem.

Settings that cannot work on aws are caught without an AWS call (an SSH key
with a passphrase that no agent holds among them); then the credentials (STS),
the region (it exists and is enabled for the account), the state bucket and the
EC2 key pair are asked of AWS, so that nothing fails in the middle of a
Terraform run for a reason that could be known up front. Before an apply makes
machines, what the account must allow for them: the root volume holds the
AMI's snapshot, and the vCPU quotas hold the cluster at its busiest.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError, NoCredentialsError

from swarmforge.errors import ConfigError
from swarmforge.packer import BUILDER_INSTANCE_TYPE
from swarmforge.settings import Settings
from swarmforge.targets.aws import client, partition_of
from swarmforge.targets.aws.quotas import Need, quota_problems
from swarmforge.targets.aws.ssh_keys import agent_holds, is_encrypted, public_key

# A region every account of its partition has enabled, so it can tell whether
# another region exists and is enabled (`ec2 describe-regions --all-regions`).
ANCHOR_REGIONS = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}
ENABLED = ("opt-in-not-required", "opted-in")


# --- settings that cannot work on aws (no AWS call needed) ---------------------------


def settings_problems(s: Settings) -> list[str]:
    """What the aws target needs beyond the settings' own validation, one line each."""
    problems = []
    if not s.state_bucket:
        problems.append("state_bucket: the aws target keeps Terraform state in S3: set "
                        "swarmforge.state_bucket (`invoke state-bootstrap --bucket NAME` creates it)")
    if not s.key_name:
        problems.append("key_name: name the EC2 key pair the nodes get (swarmforge.key_name); "
                        "ssh_key is its private half")
    if not s.allowed_ssh_cidrs:
        problems.append("allowed_ssh_cidrs: list the networks you run swarmforge from, such as "
                        "203.0.113.7/32: SSH to the nodes is open to nothing else")
    problems += [f"allowed_ssh_cidrs: {cidr} is IPv6; terraform/aws takes IPv4 networks only"
                 for cidr in s.allowed_ssh_cidrs if ":" in cidr]
    problems += _kms_key_problems(s)
    key = _key_problem(s.ssh_key)
    return problems + ([key] if key else [])


def _kms_key_problems(s: Settings) -> list[str]:
    """A KMS key serves volumes of its own region only, and its ARN names its partition."""
    arn = s.root_volume_kms_key_id
    if not arn:
        return []
    partition, region = arn.split(":")[1], arn.split(":")[3]
    problems = []
    if partition != partition_of(s.region):
        problems.append(f"root_volume_kms_key_id: {arn} is an ARN of partition {partition}, but "
                        f"{s.region} is in {partition_of(s.region)}: "
                        f"arn:{partition_of(s.region)}:kms:...")
    elif region != s.region:
        problems.append(f"root_volume_kms_key_id: {arn} is a key of {region}; EBS volumes in "
                        f"{s.region} need a key of {s.region}")
    return problems


def _key_problem(ssh_key: str | None) -> str | None:
    if not ssh_key:
        return ("ssh_key: the aws target needs the private half of the EC2 key pair: "
                "set swarmforge.ssh_key")
    path = Path(ssh_key).expanduser()
    if not path.is_file() or not os.access(path, os.R_OK):
        return f"ssh_key: {path} is not a readable file"
    if path.stat().st_mode & 0o077:
        return f"ssh_key: {path} can be read by others, and ssh refuses such keys: chmod 600 {path}"
    with path.open(errors="replace") as key:
        if "PRIVATE KEY" not in key.readline():
            return f"ssh_key: {path} is not a private key (the .pub half?)"
    if is_encrypted(path) and not agent_holds(path):
        # Terraform cannot ask for a passphrase; through the agent, it needs none.
        if public_key(path) is None:
            return (f"ssh_key: {path} has a passphrase, and without its public half swarmforge "
                    f"cannot find it in the ssh-agent: ssh-keygen -y -f {path} > {path}.pub")
        agent = ("no ssh-agent holds it" if os.environ.get("SSH_AUTH_SOCK")
                 else "no ssh-agent runs (SSH_AUTH_SOCK is not set)")
        return (f"ssh_key: {path} has a passphrase and {agent}: run `ssh-add {path}` "
                "(in a shell with an agent), or use a key without a passphrase")
    return None


def key_uses_agent(s: Settings) -> bool:
    """Whether SSH to the nodes goes through the agent: the key has a passphrase (the
    settings' check made sure that the agent holds it)."""
    return is_encrypted(key_path(s))


def key_path(s: Settings) -> Path:
    return Path(str(s.ssh_key)).expanduser().resolve()


# --- checks against AWS, before anything runs -----------------------------------------


def caller_account(s: Settings) -> str:
    """The account the standard credential chain leads to; a one-line error when there is none."""
    sts = client("sts", anchor_region(s.region), s.aws_endpoint)
    try:
        account: str = sts.get_caller_identity()["Account"]
    except NoCredentialsError:
        raise ConfigError(["AWS credentials: none found; set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY), run `aws sso login`, or use an instance role"]) from None
    except ClientError as error:
        raise ConfigError([f"AWS credentials: STS refused them: {_message(error)}"]) from None
    return account


def require_region(s: Settings, account: str) -> None:
    status = _region_statuses(s).get(s.region)
    if status is None:
        raise ConfigError([f"region: {s.region} is not an AWS region (EC2 does not list it)"])
    if status not in ENABLED:
        raise ConfigError([f"region: {s.region} is not enabled for account {account}: enable it "
                           "(AWS console, Account, AWS Regions) or choose another region"])


def _region_statuses(s: Settings) -> dict[str, str]:
    """Every region EC2 knows, with its opt-in status. Asked of the anchor region, else of the
    region itself (an organisation may deny calls outside the regions it uses)."""
    failure: ClientError | None = None
    for asked in dict.fromkeys((anchor_region(s.region), s.region)):
        try:
            regions = client("ec2", asked, s.aws_endpoint).describe_regions(AllRegions=True)
        except ClientError as error:
            failure = error
            continue
        return {r["RegionName"]: r.get("OptInStatus", ENABLED[0]) for r in regions["Regions"]}
    assert failure is not None
    raise ConfigError([f"region: cannot check {s.region}: {_message(failure)}"])


def anchor_region(region: str) -> str:
    return ANCHOR_REGIONS.get(partition_of(region), region)


def require_state_bucket(s: Settings) -> None:
    """The state bucket exists, may be used, and is where the settings say it is."""
    bucket, region = str(s.state_bucket), s.state_region or s.region
    s3 = client("s3", region, s.state_endpoint)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error_code(error) in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError([f"state_bucket: {bucket!r} does not exist: create it with "
                               f"`invoke state-bootstrap --bucket {bucket} --region {region}`"]) from None
        if error_code(error) in ("403", "AccessDenied", "Forbidden"):
            raise ConfigError([f"state_bucket: {bucket!r} exists but these credentials may not use it "
                               "(403): another account's bucket, or no s3 permissions"]) from None
        raise
    constraint = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    # S3 reports us-east-1 as no constraint, and eu-west-1 as "EU" for old buckets.
    actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)
    if actual != region:
        raise ConfigError([f"state_region: bucket {bucket!r} is in {actual}, not {region}: "
                           f"set swarmforge.state_region to {actual}"])


def require_key_pair(s: Settings) -> None:
    try:
        client("ec2", s.region, s.aws_endpoint).describe_key_pairs(KeyNames=[s.key_name])
    except ClientError as error:
        if error_code(error) != "InvalidKeyPair.NotFound":
            raise
        raise ConfigError([f"key_name: no EC2 key pair {s.key_name!r} in {s.region}: import the "
                           f"public half of {s.ssh_key} (aws ec2 import-key-pair --key-name "
                           f"{s.key_name} ...)"]) from None


# --- what the account must allow for an apply's machines -----------------------------


def capacity_problems(s: Settings, ami_id: str, say: Callable[[str], None]) -> list[str]:
    """The root volume against the AMI's snapshot, the vCPU quotas against the cluster at
    its busiest: one line each; what cannot be read is said through ``say``, not refused."""
    ec2 = client("ec2", s.region, s.aws_endpoint)
    problems = _root_volume_problems(s, ec2, ami_id)
    manager_type = s.manager_instance_type or s.instance_type
    worker_type = s.worker_instance_type or s.instance_type
    nodes = Counter({manager_type: s.managers})
    nodes[worker_type] += s.workers
    need = Need(nodes={t: n for t, n in nodes.items() if n}, surge=(manager_type, worker_type),
                builder=BUILDER_INSTANCE_TYPE)
    quotas = client("service-quotas", s.region, s.aws_endpoint)
    try:
        problems += quota_problems(need, ec2, quotas, s.cluster, s.region, say)
    except ClientError as error:
        if error_code(error) != "InvalidInstanceType":
            raise
        problems.append(f"instance_type: {_message(error)}")
    return problems


def _root_volume_problems(s: Settings, ec2: Any, ami_id: str) -> list[str]:
    try:
        images = ec2.describe_images(ImageIds=[ami_id])["Images"]
    except ClientError as error:
        if error_code(error) not in ("InvalidAMIID.NotFound", "InvalidAMIID.Unavailable",
                                     "InvalidAMIID.Malformed"):
            raise
        images = []
    if not images:
        return [f"ami: {ami_id} is not an AMI in {s.region} (deregistered, or of another region)"]
    image = images[0]
    root: dict[str, Any] = next((m for m in image.get("BlockDeviceMappings", [])
                                 if m.get("DeviceName") == image.get("RootDeviceName")), {})
    size = root.get("Ebs", {}).get("VolumeSize")
    if size is not None and s.root_volume_size < size:
        return [f"root_volume_size: {s.root_volume_size} GiB cannot hold {ami_id}, whose root "
                f"snapshot is {size} GiB: set swarmforge.root_volume_size to {size} or more"]
    return []


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    detail = error.response.get("Error", {})
    return f"{detail.get('Code', '')}: {detail.get('Message', '')}".strip(": ")
