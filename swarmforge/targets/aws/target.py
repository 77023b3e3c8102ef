"""The aws target: EC2 instances made by terraform/aws, reached over SSH with the operator's key.

Before anything runs, ``prepare()`` checks what would otherwise fail in the middle
of a Terraform run: the credentials (STS), the region (it exists and is enabled
for the account), the state bucket and the EC2 key pair. Credentials come from
the standard boto3 chain; ``aws_endpoint`` and ``state_endpoint`` exist only for
tests against moto's server.

Private workers (``worker_public_ip: false``) have no public address: our SSH
and Terraform's provisioners reach them through a running manager (ProxyJump,
``ssh_bastion_host``), found by the tags terraform/aws puts on it. Our SSH does
so whatever the setting says now, so that workers made private before it turned
true are still reached until a roll replaces them.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from swarmforge.backup_store import BackupStore
from swarmforge.catalog import ImageCatalog
from swarmforge.errors import ConfigError
from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef
from swarmforge.operation import OperationStore
from swarmforge.progress import Progress
from swarmforge.provenance import ImageStore
from swarmforge.runtime import private_dir
from swarmforge.settings import REPO_ROOT, Settings
from swarmforge.ssh import SshProfile
from swarmforge.state_file import state_document
from swarmforge.targets.aws import client
from swarmforge.targets.aws.address_pool import choose_pool, vpc_cidrs
from swarmforge.targets.aws.ami_choice import choose_ami
from swarmforge.targets.aws.amis import ClusterAmis
from swarmforge.targets.aws.backups import S3Backups
from swarmforge.targets.aws.host_keys import HostKeyPins
from swarmforge.targets.aws.instances import cluster_instances, node_facts, tag
from swarmforge.targets.aws.lease import S3Operations
from swarmforge.targets.aws.preflight import (
    caller_account,
    capacity_problems,
    key_path,
    key_uses_agent,
    require_key_pair,
    require_region,
    require_state_bucket,
    settings_problems,
)
from swarmforge.targets.aws.provenance import AmiStore
from swarmforge.targets.aws.unlock_key_parameter import UnlockKeyParameter
from swarmforge.targets.base import Baked, BakeRequest, NodeDocker
from swarmforge.unlock_keys import UnlockKeyStore

# What a destroy passes as the AMI (see variables()): valid for terraform/aws, never launched.
NO_AMI = "ami-00000000000000000"

# ssh_config patterns for private (RFC 1918) addresses: private workers' ssh_host.
PRIVATE_HOSTS = ("10.*", *(f"172.{n}.*" for n in range(16, 32)), "192.168.*")


@dataclass(frozen=True)
class AwsSshProfile(SshProfile):
    """An SshProfile that reaches private addresses through ``bastion`` (a manager)."""

    bastion: str | None = None

    def config_text(self, control: Path) -> str:
        text = super().config_text(control)
        if self.bastion:
            text += f"Host {' '.join(PRIVATE_HOSTS)}\n  ProxyJump {self.bastion}\n"
        return text


class AwsTarget:
    """EC2 instances in one region; Terraform state in an S3 bucket."""

    name = "aws"
    config_dir = REPO_ROOT / "terraform" / "aws"
    resource_type = "aws_instance"
    mirrored_providers: tuple[str, ...] = ()  # the operator's Terraform takes them from the registry
    # Terraform's own: private workers are reached through one manager's sshd, whose
    # MaxStartups (10:30:100) starts dropping connections past 10 that start at once.
    default_parallelism = 10

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ssh_dir = settings.cluster_dir / "ssh"
        self._pins = HostKeyPins(self.ssh_dir)
        self._profile = self._ssh_profile(bastion=None)
        self._ami: str | None = None
        self._operations: S3Operations | None = None
        self._bucket_checked = False
        self.ami_source: str | None = None  # where the AMI came from, once variables() chose it

    @property
    def login_user(self) -> str:
        return self.settings.ssh_user or "ubuntu"  # Canonical's Ubuntu AMIs

    def prepare(self, *, destroying: bool = False) -> SshProfile:
        self._require_cluster_settings()
        s = self.settings
        self._require_state_bucket()
        if not destroying:  # a key pair deleted before the nodes must not keep them running
            require_key_pair(s)
        private_dir(self.ssh_dir)
        self._profile = self._ssh_profile(self._bastion())
        self._profile.write_config()
        return self._profile

    def ssh_profile(self) -> SshProfile | None:
        # The config as the last prepare() wrote it, its ProxyJump included.
        return self._profile if self._profile.config.exists() else None

    def variables(self, *, destroying: bool = False) -> dict[str, str]:
        s = self.settings
        variables = {
            "cluster_name": s.cluster,
            "region": s.region,
            # A destroy creates nothing, so the AMI is never read: none is chosen, and a
            # pruned AMI or a disagreeing record cannot keep the nodes running.
            "swarm_ami_id": NO_AMI if destroying else self._ami_id(),
            "swarm_instance_type": s.instance_type,
            "key_name": str(s.key_name),
            # A list in HCL syntax (JSON is valid HCL), as `-var` takes it.
            "allowed_ssh_cidrs": json.dumps(list(s.allowed_ssh_cidrs)),
            "ssh_user": self._profile.user,
            "ssh_private_key_path": str(self._profile.identity),
            "worker_public_ip": str(s.worker_public_ip).lower(),
            # One setting for SSH's deadline: also how long provisioners wait for a node's SSH.
            "ssh_timeout": f"{math.ceil(s.ssh_timeout)}s",
            # A key with a passphrase reaches Terraform through the agent (preflight checked it).
            "ssh_use_agent": str(key_uses_agent(s)).lower(),
            "swarm_default_addr_pool": "" if destroying else self._address_pool,
            **account_variables(s),
        }
        bastion = self._refresh_bastion()
        if bastion and not s.worker_public_ip:  # Terraform's steps for private workers only
            variables["ssh_bastion_host"] = bastion
            variables["ssh_bastion_host_key"] = self._pins.key_at(bastion)
        return variables

    @cached_property
    def _address_pool(self) -> str:
        """The overlay pool, outside the VPC's networks ("": Docker's default fits)."""
        s = self.settings
        return choose_pool(vpc_cidrs(client("ec2", s.region, s.aws_endpoint), s.vpc_id, s.region))

    def check_capacity(self, progress: Progress) -> None:
        """Before an apply makes machines: the root volume holds the AMI, and the account's
        vCPU quotas hold the cluster at its busiest (see preflight.py)."""
        with progress.step("checking the AMI's root snapshot and the account's vCPU quotas"):
            problems = capacity_problems(self.settings, self._ami_id(), progress.detail)
            if problems:
                raise ConfigError(problems)

    def pin_host_keys(self, refs: Sequence[NodeRef], say: Callable[[str], None]) -> dict[str, str]:
        """Each node's host key, read from its console the first time (see host_keys.py)."""
        ec2 = client("ec2", self.settings.region, self.settings.aws_endpoint)
        return self._pins.pin(refs, lambda instance: console_output(ec2, instance), say)

    def exists(self) -> bool:
        self._require_cluster_settings()
        # Another machine's cluster: the state in the bucket holds resources.
        return (self.settings.cluster_dir.exists()
                or bool(state_document(self.settings).get("resources")))

    def describe_image(self) -> str:
        ami = self._ami_id()
        return f"{ami} (from {self.ami_source})"

    def desired_image(self) -> str | None:
        return self._ami_id()

    def node_facts(self, refs: Sequence[NodeRef]) -> dict[str, NodeFacts]:
        """Each node's AMI, state, live addresses and drift, as EC2 tells (instances.py)."""
        ec2 = client("ec2", self.settings.region, self.settings.aws_endpoint)
        return node_facts(ec2, self.settings, refs)

    def images(self) -> ImageCatalog:
        return ClusterAmis.of(self.settings)

    def image_store(self, regions: tuple[str, ...] = ()) -> ImageStore:
        if self.settings.ami_id:
            raise ConfigError([f"ami_id: {self.settings.ami_id} is pinned (--ami or "
                               "swarmforge.ami_id), so a roll would never move onto the AMI "
                               "rebuild bakes: unset it"])
        return AmiStore(self.settings, regions)

    def ssh_host_ahead(self, role: str, slot: int) -> str | None:
        """None: an instance's addresses are EC2's to give when it is made."""
        return None

    def bake(self, request: BakeRequest, progress: Progress) -> Baked:
        from swarmforge.targets.aws.bake import bake_ami  # Packer's templates: only to bake

        return bake_ami(self.settings, request, progress, self.operation_store)

    def operation_store(self) -> OperationStore:
        """The lock and journal beside the state in S3 (lease.py): one for every machine."""
        if self._operations is None:
            # Only the bucket: a bake or a prune takes this lock too, and needs no key pair.
            bucket = [line for line in settings_problems(self.settings)
                      if line.startswith("state_bucket:")]
            if bucket:
                raise ConfigError(bucket)
            self._require_state_bucket()  # the lock is taken there, before anything else
            s = self.settings
            self._operations = S3Operations(
                client("s3", s.state_region or s.region, s.state_endpoint), str(s.state_bucket),
                s.state_key, s.cluster)
        return self._operations

    def backup_store(self) -> BackupStore:
        """``s3://<state bucket>/swarmforge/<cluster>/backups/``: beside the state (where
        the IAM policies let the cluster's jobs write), for every machine."""
        self.operation_store()  # the same checks: the bucket is set and exists
        s = self.settings
        return S3Backups(client("s3", s.state_region or s.region, s.state_endpoint),
                         str(s.state_bucket), s.state_key.rsplit("/", 1)[0] + "/backups/")

    def node_docker(self, ref: NodeRef) -> NodeDocker:
        """systemd's docker units (the socket too: it would start the daemon again)."""
        return NodeDocker(stop="sudo -n systemctl stop docker.socket docker.service",
                          start="sudo -n systemctl start docker.socket docker.service",
                          data_root="/var/lib/docker",
                          as_root="" if self.login_user == "root" else "sudo -n ")

    def teardown(self) -> None:
        """Forget the nodes' host keys and connections; Terraform's destroy removed the rest."""
        shutil.rmtree(self._profile.control_dir, ignore_errors=True)
        for stale in (self._profile.known_hosts, self._profile.config, self._pins.path):
            stale.unlink(missing_ok=True)
        self.unlock_key_store().delete()  # the swarm it unlocked is gone

    def unlock_key_store(self) -> UnlockKeyStore:
        """An SSM SecureString in the cluster's region (unlock_key_parameter.py)."""
        return UnlockKeyParameter(self.settings)

    def _require_state_bucket(self) -> None:
        """The credentials, the region and the state bucket, asked of AWS once per run."""
        if not self._bucket_checked:
            s = self.settings
            require_region(s, caller_account(s))
            require_state_bucket(s)
            self._bucket_checked = True

    def _require_cluster_settings(self) -> None:
        """What a cluster needs that listing or baking images does not, checked first."""
        problems = settings_problems(self.settings)
        if problems:
            raise ConfigError(problems)

    def _ssh_profile(self, bastion: str | None) -> AwsSshProfile:
        # Strict: known_hosts holds the keys pinned from each instance's console only.
        return AwsSshProfile(name=self.settings.cluster, user=self.login_user,
                             identity=key_path(self.settings), known_hosts=self.ssh_dir / "known_hosts",
                             config=self.ssh_dir / "config",
                             state_dir=Path(self.settings.state_dir), bastion=bastion)

    def _bastion(self) -> str | None:
        # Whatever worker_public_ip says now: workers made private before it turned true
        # keep no public address until a roll replaces them, and are reached through it.
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


def account_variables(s: Settings) -> dict[str, str]:
    """The settings of a real account (network, published ports, machines, tags) as `-var`
    values: lists, objects and maps as JSON, which is valid HCL. A setting left at None is
    left out, so that terraform/aws's own default (null) holds."""
    variables = {
        "swarm_manager_instance_type": s.manager_instance_type or s.instance_type,
        "swarm_worker_instance_type": s.worker_instance_type or s.instance_type,
        "subnet_ids": json.dumps(list(s.subnet_ids)),
        "worker_subnet_ids": json.dumps(list(s.worker_subnet_ids)),
        "create_nat_gateway": str(s.create_nat_gateway).lower(),
        "public_ports": json.dumps([
            {"port": p.port, "protocol": p.protocol,
             # once each: terraform/aws makes one rule per port and network
             "cidr_blocks": list(dict.fromkeys(p.cidrs or s.public_cidrs or ("0.0.0.0/0",)))}
            for p in s.public_ports]),
        "root_volume_size": str(s.root_volume_size),
        "tags": json.dumps(dict(s.tags)),
    }
    optional = {"vpc_id": s.vpc_id, "private_route_table_id": s.private_route_table_id,
                "iam_instance_profile": s.iam_instance_profile,
                "root_volume_kms_key_id": s.root_volume_kms_key_id,
                # on-demand workers (false) are terraform/aws's default too
                "worker_spot": "true" if s.worker_spot else None,
                "worker_spot_max_price": s.worker_spot_max_price}
    return {**variables, **{name: value for name, value in optional.items() if value is not None}}


# --- what exists ------------------------------------------------------------------------


def manager_address(ec2: Any, cluster: str) -> str | None:
    """The public address of a running manager of ``cluster`` (the lowest slot), if any."""
    running = cluster_instances(ec2, cluster, {"tag:Role": ["manager"],
                                               "instance-state-name": ["running"]})
    managers = [i for i in running if i.get("PublicIpAddress")]
    managers.sort(key=lambda i: int(tag(i, "Slot") or 0))
    return str(managers[0]["PublicIpAddress"]) if managers else None


def console_output(ec2: Any, instance_id: str) -> str:
    """The instance's console as text ("" before it has any). botocore decodes EC2's base64."""
    text: str = ec2.get_console_output(InstanceId=instance_id, Latest=True).get("Output") or ""
    return text
