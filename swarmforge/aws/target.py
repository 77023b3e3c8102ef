"""The aws target: EC2 instances made by terraform/aws, reached over SSH with the operator's key.

Before anything runs, ``prepare()`` checks what would otherwise fail in the middle
of a Terraform run: the credentials (STS), the region (it exists and is enabled
for the account), the state bucket and the EC2 key pair. Credentials come from
the standard boto3 chain; ``aws_endpoint`` and ``state_endpoint`` exist only for
tests against moto's server.

Private workers (``worker_public_ip: false``) have no public address: our SSH
and Terraform's provisioners reach them through a running manager (ProxyJump,
``ssh_bastion_host``), found by the tags terraform/aws puts on it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, NoCredentialsError, UnknownRegionError

from swarmforge.aws import client
from swarmforge.aws.ami_choice import choose_ami
from swarmforge.aws.amis import HOLDING_STATES
from swarmforge.errors import ConfigError
from swarmforge.settings import REPO_ROOT, Settings
from swarmforge.ssh import SshProfile

if TYPE_CHECKING:
    from swarmforge.cluster import NodeRef

# A region every account of its partition has enabled, so it can tell whether
# another region exists and is enabled (`ec2 describe-regions --all-regions`).
ANCHOR_REGIONS = {"aws": "us-east-1", "aws-cn": "cn-north-1", "aws-us-gov": "us-gov-west-1"}
ENABLED = ("opt-in-not-required", "opted-in")
# ssh_config patterns for private (RFC 1918) addresses: private workers' ssh_host.
PRIVATE_HOSTS = ("10.*", *(f"172.{n}.*" for n in range(16, 32)), "192.168.*")


@dataclass(frozen=True)
class AwsSshProfile(SshProfile):
    """An SshProfile that reaches private addresses through ``bastion`` (a manager)."""

    bastion: str | None = None

    def write_config(self) -> None:
        super().write_config()
        if self.bastion:
            with self.config.open("a") as config:
                config.write(f"Host {' '.join(PRIVATE_HOSTS)}\n  ProxyJump {self.bastion}\n")


class AwsTarget:
    """EC2 instances in one region; Terraform state in an S3 bucket."""

    name = "aws"
    config_dir = REPO_ROOT / "terraform" / "aws"
    resource_type = "aws_instance"

    def __init__(self, settings: Settings) -> None:
        problems = settings_problems(settings)
        if problems:
            raise ConfigError(problems)
        self.settings = settings
        self.ssh_dir = settings.cluster_dir / "ssh"
        self._profile = self._ssh_profile(bastion=None)
        self._ami: str | None = None
        self.ami_source: str | None = None  # where the AMI came from, once variables() chose it

    def prepare(self) -> SshProfile:
        s = self.settings
        account = caller_account(s)
        require_region(s, account)
        require_state_bucket(s)
        require_key_pair(s)
        self.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._profile = self._ssh_profile(self._bastion())
        self._profile.write_config()
        return self._profile

    def variables(self) -> dict[str, str]:
        s = self.settings
        variables = {
            "cluster_name": s.cluster,
            "region": s.region,
            "swarm_ami_id": self._ami_id(),
            "swarm_instance_type": s.instance_type,
            "key_name": str(s.key_name),
            # A list in HCL syntax (JSON is valid HCL), as `-var` takes it.
            "allowed_ssh_cidrs": json.dumps(list(s.allowed_ssh_cidrs)),
            "ssh_user": self._profile.user,
            "ssh_private_key_path": str(self._profile.identity),
            "worker_public_ip": str(s.worker_public_ip).lower(),
        }
        bastion = self._refresh_bastion()
        if bastion:
            variables["ssh_bastion_host"] = bastion
        return variables

    def exists(self) -> bool:
        return self.settings.cluster_dir.exists() or stored_resources(self.settings)

    def desired_image(self) -> str | None:
        return self._ami_id()

    def node_images(self, refs: Sequence[NodeRef]) -> dict[str, str]:
        """The AMI each node (by name) was launched from, as EC2 tells."""
        names = [ref.name for ref in refs]
        if not names:
            return {}
        ec2 = client("ec2", self.settings.region, self.settings.aws_endpoint)
        return {_tag(i, "Name") or "": i["ImageId"]
                for i in cluster_instances(ec2, self.settings.cluster, {
                    "tag:Name": names, "instance-state-name": list(HOLDING_STATES)})}

    def teardown(self) -> None:
        """Forget the nodes' host keys and connections; Terraform's destroy removed the rest."""
        shutil.rmtree(self._profile.control_dir, ignore_errors=True)
        for stale in (self._profile.known_hosts, self._profile.config):
            stale.unlink(missing_ok=True)

    def _ssh_profile(self, bastion: str | None) -> AwsSshProfile:
        # accept-new: EC2 does not hand out host keys before the first contact.
        return AwsSshProfile(name=self.settings.cluster, user=self.settings.login_user,
                             identity=key_path(self.settings), known_hosts=self.ssh_dir / "known_hosts",
                             config=self.ssh_dir / "config", accept_new_host_keys=True,
                             bastion=bastion)

    def _bastion(self) -> str | None:
        if self.settings.worker_public_ip:
            return None
        return manager_address(client("ec2", self.settings.region, self.settings.aws_endpoint),
                               self.settings.cluster)

    def _refresh_bastion(self) -> str | None:
        """Looked up again at every run: phase 1 has just made the first manager."""
        bastion = self._bastion()
        if bastion != self._profile.bastion:
            self._profile = replace(self._profile, bastion=bastion)
            self._profile.write_config()
        return bastion

    def _ami_id(self) -> str:
        if self._ami is None:
            self._ami, self.ami_source = choose_ami(self.settings)
        return self._ami


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
    key = _key_problem(s.ssh_key)
    return problems + ([key] if key else [])


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
    return None


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
    import boto3  # only when needed: see swarmforge.aws.client

    try:
        partition = boto3.session.Session().get_partition_for_region(region)
    except UnknownRegionError:
        partition = "aws"  # unknown to this botocore: the commercial partition can tell
    return ANCHOR_REGIONS.get(partition, region)


def require_state_bucket(s: Settings) -> None:
    """The state bucket exists, may be used, and is where the settings say it is."""
    bucket, region = str(s.state_bucket), s.state_region or s.region
    s3 = client("s3", region, s.state_endpoint)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        if _code(error) in ("404", "NoSuchBucket", "NotFound"):
            raise ConfigError([f"state_bucket: {bucket!r} does not exist: create it with "
                               f"`invoke state-bootstrap --bucket {bucket} --region {region}`"]) from None
        if _code(error) in ("403", "AccessDenied", "Forbidden"):
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
        if _code(error) != "InvalidKeyPair.NotFound":
            raise
        raise ConfigError([f"key_name: no EC2 key pair {s.key_name!r} in {s.region}: import the "
                           f"public half of {s.ssh_key} (aws ec2 import-key-pair --key-name "
                           f"{s.key_name} ...)"]) from None


# --- what exists ------------------------------------------------------------------------


def manager_address(ec2: Any, cluster: str) -> str | None:
    """The public address of a running manager of ``cluster`` (the lowest slot), if any."""
    running = cluster_instances(ec2, cluster, {"tag:Role": ["manager"],
                                               "instance-state-name": ["running"]})
    managers = [i for i in running if i.get("PublicIpAddress")]
    managers.sort(key=lambda i: int(_tag(i, "Slot") or 0))
    return str(managers[0]["PublicIpAddress"]) if managers else None


def cluster_instances(ec2: Any, cluster: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The instances terraform/aws tagged for ``cluster`` that also match ``filters``."""
    wanted = [{"Name": name, "Values": values}
              for name, values in {"tag:Cluster": [cluster], **filters}.items()]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=wanted)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def stored_resources(s: Settings) -> bool:
    """Whether the cluster's state in the bucket holds any resource."""
    s3 = client("s3", s.state_region or s.region, s.state_endpoint)
    try:
        body = s3.get_object(Bucket=s.state_bucket, Key=s.state_key)["Body"].read()
    except ClientError as error:
        if _code(error) in ("NoSuchKey", "404"):
            return False
        raise
    return bool(json.loads(body or b"{}").get("resources"))


def _tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _message(error: ClientError) -> str:
    detail = error.response.get("Error", {})
    return f"{detail.get('Code', '')}: {detail.get('Message', '')}".strip(": ")
