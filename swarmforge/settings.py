"""A cluster's settings: read once from Invoke's config and the task's flags, validated, frozen.

Precedence: a flag given on the command line beats ``swarmforge.*`` in
``invoke.yaml`` (or ``INVOKE_SWARMFORGE_*`` in the environment), which beats the
defaults here. Every problem is reported, one line each, before anything runs.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swarmforge.errors import ConfigError
from swarmforge.setting_values import PublicPort, cidr_problems, coerce, ipv4_problems, tag_problems

TARGETS = ("local", "aws")
MAX_MANAGERS = 7
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
STATE_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
LOG_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")  # what Docker's json-file max-size takes
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = "_build"
PACKER_DIR = REPO_ROOT / "packer"  # the Packer templates
SCRIPTS_DIR = REPO_ROOT / "scripts"  # what runs on the nodes, baked in and uploaded
TIMEOUTS = ("health_timeout", "terraform_timeout", "packer_timeout", "ssh_timeout")
# AWS ids and names, as terraform/aws/variables.tf checks them too.
AWS_IDS = {"vpc_id": "vpc", "subnet_ids": "subnet", "worker_subnet_ids": "subnet",
           "private_route_table_id": "rtb"}
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$")
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+$")
# Ports the swarm uses between its own nodes, and SSH (allowed_ssh_cidrs): never published.
RESERVED_PORTS = (22, 2377, 7946, 4789)


@dataclass(frozen=True)
class Settings:
    """Everything one run needs to know about one cluster."""

    cluster: str = "swarm"
    target: str = "local"
    managers: int = 3
    workers: int = 2
    allow_even_managers: bool = False
    instance_type: str = "t3.small"
    region: str = "us-east-1"
    ami_id: str | None = None
    ssh_user: str | None = None  # None: the target's own (root locally, ubuntu on aws)
    ssh_key: str | None = None
    allowed_ssh_cidrs: tuple[str, ...] = ()
    key_name: str | None = None  # aws: the EC2 key pair the nodes get (ssh_key is its private half)
    worker_public_ip: bool = True  # aws: False keeps workers private, reached through a manager
    # aws: what a real account sets (README, "Settings for a real account").
    vpc_id: str | None = None  # None: the region's default VPC and its default subnets
    subnet_ids: tuple[str, ...] = ()  # subnets of vpc_id (public: managers have public IPs)
    worker_subnet_ids: tuple[str, ...] = ()  # empty: subnet_ids; private subnets for private workers
    create_nat_gateway: bool = False  # one NAT gateway: private workers' way out
    private_route_table_id: str | None = None  # with the NAT gateway: your table, not a new one
    public_ports: tuple[PublicPort, ...] = ()  # published swarm services: "80/tcp,443/tcp"
    public_cidrs: tuple[str, ...] = ()  # who reaches public_ports; empty: anyone (0.0.0.0/0)
    iam_instance_profile: str | None = None  # None: the nodes get no AWS credentials
    manager_instance_type: str | None = None  # None: instance_type
    worker_instance_type: str | None = None  # None: instance_type
    root_volume_size: int = 20  # GiB
    root_volume_kms_key_id: str | None = None  # None: the account's default EBS key
    tags: tuple[tuple[str, str], ...] = ()  # on everything terraform/aws makes: "team=infra,env=prod"
    parallelism: int = 10
    terraform_bin: str | None = None  # None: `terraform` on PATH if new enough, else ours
    state_dir: str = str(REPO_ROOT / ".swarmforge")
    health_timeout: float = 180.0
    # Deadlines, in seconds, of one external command each; past one, the command is stopped.
    terraform_timeout: float = 3600.0  # one terraform init/plan/apply: 100 nodes on AWS take long
    packer_timeout: float = 7200.0  # one packer build, copies of the AMI to other regions included
    # One command over SSH; aws: also how long Terraform's provisioners wait for a new node's
    # SSH to answer (terraform/aws's ssh_timeout, whose default it keeps: 5m).
    ssh_timeout: float = 300.0
    state_bucket: str | None = None  # None: Terraform state stays in the cluster's dir
    state_region: str | None = None  # None: the cluster's region
    state_endpoint: str | None = None  # an S3-compatible endpoint (tests use moto's server)
    state_lock_table: str | None = None  # DynamoDB locking, for Terraform older than 1.10
    aws_endpoint: str | None = None  # every boto3 client's endpoint (tests use moto's server)
    # What every baked node image gets (AMI and local image alike): rotated json-file logs.
    docker_log_max_size: str = "10m"
    docker_log_max_file: int = 5
    preload_images: tuple[str, ...] = ()  # local: `docker save` archives the local image holds

    @property
    def cluster_dir(self) -> Path:
        """Everything this cluster keeps on this machine: state, keys, logs."""
        return Path(self.state_dir) / self.cluster

    @property
    def state_key(self) -> str:
        """Where this cluster's state lives in the state bucket: one key per cluster."""
        return f"swarmforge/{self.cluster}/terraform.tfstate"

    @property
    def build_dir(self) -> Path:
        """Where the cluster's bakes keep var files, Packer logs and the image record.

        Under the state dir but outside the cluster's own dir: `invoke destroy`
        removes that, and a bake outlives its clusters (no cluster name starts with "_").
        """
        return Path(self.state_dir) / BUILD_DIR / self.cluster


def load_settings(config: Mapping[str, Any], flags: Mapping[str, Any]) -> Settings:
    """Merge config and flags (``None`` = flag not given), validate, and freeze."""
    merged = {**{k: v for k, v in config.items() if v is not None},
              **{k: v for k, v in flags.items() if v is not None}}
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigError([f"unknown setting swarmforge.{name}" for name in unknown])
    values, problems = coerce(merged)
    if problems:
        raise ConfigError(problems)
    settings = Settings(**values)
    problems = validate(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def validate(s: Settings) -> list[str]:
    """Every problem with ``s``, one line each; empty when it can run."""
    problems = []
    if s.target not in TARGETS:
        problems.append(f"target: unknown target {s.target!r}; choose one of: {', '.join(TARGETS)}")
    if not CLUSTER_NAME.match(s.cluster):
        problems.append(f"cluster: {s.cluster!r} must be 2-24 characters of a-z, 0-9 and '-', "
                        "starting with a letter")
    problems += _manager_problems(s)
    if s.workers < 0:
        problems.append(f"workers: {s.workers} is negative; use 0 or more")
    if s.ami_id is not None and not AMI_ID.match(s.ami_id):
        problems.append(f"ami_id: {s.ami_id!r} is not an AMI id (ami- and 8 or 17 hex digits)")
    for name in ("region", "state_region"):
        region = getattr(s, name)
        if region is not None and not REGION.match(region):
            problems.append(f"{name}: {region!r} is not an AWS region name such as us-east-1")
    if s.state_bucket is not None and not STATE_BUCKET.match(s.state_bucket):
        problems.append(f"state_bucket: {s.state_bucket!r} is not an S3 bucket name")
    problems += cidr_problems(s.allowed_ssh_cidrs)
    problems += _account_problems(s)
    if s.aws_endpoint is not None and not _is_http_url(s.aws_endpoint):
        problems.append(f"aws_endpoint: {s.aws_endpoint!r} is not an http(s) URL such as "
                        "http://127.0.0.1:5000")
    if not 1 <= s.parallelism <= 100:
        problems.append(f"parallelism: {s.parallelism} must be from 1 to 100")
    problems += _log_rotation_problems(s)
    for name in TIMEOUTS:
        seconds = getattr(s, name)
        if not (math.isfinite(seconds) and seconds > 0):  # nan compares false with anything
            problems.append(f"{name}: {seconds} must be a number of seconds more than 0")
    return problems


def _manager_problems(s: Settings) -> list[str]:
    if s.managers < 1:
        return [f"managers: {s.managers} leaves the swarm without a manager; use 1, 3, 5 or 7"]
    if s.managers > MAX_MANAGERS:
        return [f"managers: {s.managers} is more than {MAX_MANAGERS}; more managers slow every "
                "raft write and add no safety: use 3, 5 or 7"]
    if s.managers % 2 == 0 and not s.allow_even_managers:
        return [f"managers: {s.managers} is even; {s.managers} managers survive only "
                f"{(s.managers - 1) // 2} failure(s), as {s.managers - 1} do: use "
                f"{s.managers - 1} or {s.managers + 1}, or pass --allow-even-managers"]
    return []


def _log_rotation_problems(s: Settings) -> list[str]:
    problems = []
    if not LOG_SIZE.match(s.docker_log_max_size):
        problems.append(f"docker_log_max_size: {s.docker_log_max_size!r} is not a size such as "
                        "10m, 512k or 1g")
    if s.docker_log_max_file < 1:
        problems.append(f"docker_log_max_file: {s.docker_log_max_file} must be 1 or more")
    return problems


def _account_problems(s: Settings) -> list[str]:
    """The aws settings of a real account: network, published ports, machines, tags."""
    return _network_problems(s) + _port_problems(s) + _machine_problems(s) + tag_problems(s.tags)


def _network_problems(s: Settings) -> list[str]:
    problems = []
    for name, prefix in AWS_IDS.items():
        value = getattr(s, name)
        for one in value if isinstance(value, tuple) else [value] if value is not None else []:
            if not re.fullmatch(prefix + r"-[0-9a-f]{8}([0-9a-f]{9})?", one):
                problems.append(f"{name}: {one!r} is not an id such as {prefix}-0123456789abcdef0")
    if (s.vpc_id is None) != (not s.subnet_ids):
        problems.append("vpc_id, subnet_ids: set both (your VPC and its subnets for the nodes), "
                        "or neither for the region's default VPC")
    if s.worker_subnet_ids and s.vpc_id is None:
        problems.append("worker_subnet_ids: subnets of vpc_id: set vpc_id and subnet_ids too")
    if s.create_nat_gateway:
        if s.worker_public_ip:
            problems.append("create_nat_gateway: only private workers need one: set "
                            "worker_public_ip to false, or leave the NAT gateway out")
        if not s.worker_subnet_ids:
            problems.append("create_nat_gateway: name the private subnets the workers run in "
                            "(worker_subnet_ids); the NAT gateway goes in the first of subnet_ids")
        shared = sorted(set(s.worker_subnet_ids) & set(s.subnet_ids))
        if shared:
            problems.append(f"worker_subnet_ids: {', '.join(shared)} also in subnet_ids: private "
                            "workers need subnets of their own, routed through the NAT gateway")
    if s.private_route_table_id is not None and not s.create_nat_gateway:
        problems.append("private_route_table_id: the NAT gateway's route goes there: set "
                        "create_nat_gateway too")
    return problems


def _port_problems(s: Settings) -> list[str]:
    problems = []
    seen: set[str] = set()
    for port in s.public_ports:
        if not 1 <= port.port <= 65535:
            problems.append(f"public_ports: {port.port} is not a port from 1 to 65535")
        elif port.port in RESERVED_PORTS:
            problems.append(f"public_ports: {port.port} is SSH's (allowed_ssh_cidrs) or the "
                            "swarm's own (2377, 7946, 4789): never published")
        if port.protocol not in ("tcp", "udp"):
            problems.append(f"public_ports: {port}: the protocol must be tcp or udp")
        if str(port) in seen:
            problems.append(f"public_ports: {port} is listed twice")
        seen.add(str(port))
        problems += ipv4_problems(f"public_ports ({port}) cidrs", port.cidrs)
    return problems + ipv4_problems("public_cidrs", s.public_cidrs)


def _machine_problems(s: Settings) -> list[str]:
    problems = []
    for name in ("instance_type", "manager_instance_type", "worker_instance_type"):
        value = getattr(s, name)
        if value is not None and not INSTANCE_TYPE.match(value):
            problems.append(f"{name}: {value!r} is not an EC2 instance type such as t3.small")
    if s.iam_instance_profile is not None and not INSTANCE_PROFILE.match(s.iam_instance_profile):
        problems.append(f"iam_instance_profile: {s.iam_instance_profile!r} is not an instance "
                        "profile's name (up to 128 letters, digits and +=,.@_-; not its ARN)")
    if not 8 <= s.root_volume_size <= 16384:
        problems.append(f"root_volume_size: {s.root_volume_size} must be from 8 to 16384 (GiB)")
    if s.root_volume_kms_key_id is not None and not KMS_KEY_ARN.match(s.root_volume_kms_key_id):
        problems.append(f"root_volume_kms_key_id: {s.root_volume_kms_key_id!r} is not a KMS key "
                        "ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>")
    return problems


def _is_http_url(text: str) -> bool:
    try:
        url = urllib.parse.urlsplit(text)
        _ = url.port  # ValueError when the port is not a number
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def config_defaults() -> dict[str, Any]:
    """The ``swarmforge`` config section with every key, so Invoke maps INVOKE_SWARMFORGE_*."""
    defaults = Settings()
    return {f.name: _plain(getattr(defaults, f.name)) for f in fields(Settings)}


def _plain(value: Any) -> Any:
    # Invoke casts an environment variable to its default's type and cannot make a
    # list of a string: a list setting defaults to None, so that "a.tar,b.tar" arrives
    # as text and load_settings splits it.
    if isinstance(value, tuple):
        return list(value) or None
    # Invoke makes any non-empty text True for a true/false default ("false" too):
    # those default to None as well, and load_settings reads the text.
    if isinstance(value, bool):
        return None
    return value
