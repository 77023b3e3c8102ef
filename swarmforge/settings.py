"""A cluster's settings: read once from Invoke's config and the task's flags, validated, frozen.

Precedence: a flag given on the command line beats ``swarmforge.*`` in
``invoke.yaml`` (or ``INVOKE_SWARMFORGE_*`` in the environment), which beats the
defaults here. Every problem is reported, one line each, before anything runs.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swarmforge.errors import ConfigError
from swarmforge.setting_values import (
    CONTROL,
    MAX_SECONDS,
    SECONDS,
    PublicPort,
    cidr_problems,
    coerce,
    control_problems,
    ipv4_problems,
    tag_problems,
)

TARGETS = ("local", "aws")
MAX_MANAGERS = 7
MAX_WORKERS = 500  # as terraform/aws takes; the local sandbox holds fewer (its target says)
MAX_PARALLELISM = 256
MAX_LOG_FILES = 1000  # docker_log_max_file: more is a typo (at 10m each, 10 GB per container)
# Every pattern is matched whole (fullmatch): `$` alone lets a trailing line break through.
# As terraform/aws/variables.tf checks cluster_name. Shared dirs in the state dir (_build,
# _images, _run) start with "_", which no cluster name can.
CLUSTER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$")
# terraform/aws names the security group "<cluster>-swarm-..."; EC2 refuses names "sg-*".
RESERVED_PREFIX = "sg-"
AMI_ID = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
STATE_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
LOCK_TABLE = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's table names
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]+$")  # as terraform/aws checks it
LOG_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")  # what Docker's json-file max-size takes
# Text that reaches ssh_config: no spaces, quotes, "%" or "$" (ssh expands %d, ${HOME}),
# and no line break, which would start an option of its own (a ProxyCommand runs a shell).
USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")  # POSIX, conservative; as terraform/aws
KEY_PATH = re.compile(r"[A-Za-z0-9._/~+@,-]+")
# The state dir also reaches terraform/local's sandbox_image, which takes only these.
STATE_PATH = re.compile(r"/[A-Za-z0-9._/-]+")
KEY_NAME = re.compile(r"[\x20-\x7e]{1,255}")  # an EC2 key pair's name: printable ASCII
REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = "_build"
PACKER_DIR = REPO_ROOT / "packer"  # the Packer templates
SCRIPTS_DIR = REPO_ROOT / "scripts"  # what runs on the nodes, baked in and uploaded
TIMEOUTS = ("health_timeout", "dead_after", "terraform_timeout", "packer_timeout", "ssh_timeout")
# AWS ids and names, as terraform/aws/variables.tf checks them too.
AWS_IDS = {"vpc_id": "vpc", "subnet_ids": "subnet", "worker_subnet_ids": "subnet",
           "private_route_table_id": "rtb"}
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")
INSTANCE_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$", re.ASCII)
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")
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
    worker_spot: bool = False  # aws: workers on spot, leaving the swarm on the 2-minute notice
    worker_spot_max_price: str | None = None  # USD an hour; None: up to the on-demand price
    private_route_table_id: str | None = None  # with the NAT gateway: your table, not a new one
    public_ports: tuple[PublicPort, ...] = ()  # published swarm services: "80/tcp,443/tcp"
    public_cidrs: tuple[str, ...] = ()  # who reaches public_ports; empty: anyone (0.0.0.0/0)
    iam_instance_profile: str | None = None  # None: the nodes get no AWS credentials
    manager_instance_type: str | None = None  # None: instance_type
    worker_instance_type: str | None = None  # None: instance_type
    root_volume_size: int = 20  # GiB
    root_volume_kms_key_id: str | None = None  # None: the account's default EBS key
    unlock_key_kms_key_id: str | None = None  # aws, autolock: None: SSM's default key
    tags: tuple[tuple[str, str], ...] = ()  # on everything terraform/aws makes: "team=infra,env=prod"
    parallelism: int | None = None  # None: the target's own (its default_parallelism)
    terraform_bin: str | None = None  # None: `terraform` on PATH if new enough, else ours
    state_dir: str = str(REPO_ROOT / ".swarmforge")
    health_timeout: float = 180.0
    # Seconds a node Docker calls Down (a manager raft calls unreachable) is seen so, in a
    # row, before a wait for health names it dead and stops (swarm.DEAD_AFTER says why 60).
    dead_after: float = 60.0
    # heal's brake: more nodes unhealthy at once than this is refused as a likely network
    # partition (heal.py). Workers: None is 34 % of the workers, at least 1.
    max_unhealthy_managers: int = 1
    max_unhealthy_workers: int | None = None
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
    backup_keep: int = 7  # swarm backups kept (`invoke backup` prunes the oldest after one)

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
    problems += _cluster_problems(s.cluster)
    problems += _manager_problems(s)
    if s.workers < 0:
        problems.append(f"workers: {s.workers} is negative; use 0 or more")
    elif s.workers > MAX_WORKERS:
        problems.append(f"workers: {s.workers} is more than {MAX_WORKERS}, the most "
                        "terraform/aws takes")
    if s.ami_id is not None and not AMI_ID.fullmatch(s.ami_id):
        problems.append(f"ami_id: {s.ami_id!r} is not an AMI id (ami- and 8 or 17 hex digits)")
    for name in ("region", "state_region"):
        region = getattr(s, name)
        if region is not None and not REGION.fullmatch(region):
            problems.append(f"{name}: {region!r} is not an AWS region name such as us-east-1")
    problems += cidr_problems(s.allowed_ssh_cidrs)
    problems += _account_problems(s)
    problems += _state_problems(s)
    problems += _ssh_problems(s)
    if s.parallelism is not None and not 1 <= s.parallelism <= MAX_PARALLELISM:
        problems.append(f"parallelism: {s.parallelism} must be from 1 to {MAX_PARALLELISM}")
    problems += _log_rotation_problems(s)
    for name in ("max_unhealthy_managers", "max_unhealthy_workers"):
        if (getattr(s, name) or 0) < 0:
            problems.append(f"{name}: {getattr(s, name)} is negative; use 0 or more")
    for name in TIMEOUTS:
        seconds = getattr(s, name)
        if not 0 < seconds <= MAX_SECONDS:  # nan compares false with anything, inf is too long
            problems.append(f"{name}: {seconds} must be {SECONDS}")
    problems += control_problems("terraform_bin", [s.terraform_bin or ""])
    return problems + control_problems("preload_images", s.preload_images)


def _cluster_problems(name: str) -> list[str]:
    if not CLUSTER_NAME.fullmatch(name):
        return [f"cluster: {name!r} must be 2-24 characters of a-z, 0-9 and '-', "
                "starting with a letter"]
    if name.startswith(RESERVED_PREFIX):
        return [f"cluster: {name!r} starts with {RESERVED_PREFIX!r}, which EC2 keeps for "
                "security group ids"]
    return []


def _state_problems(s: Settings) -> list[str]:
    """Where the state and the AWS APIs are: they reach Terraform's backend and boto3."""
    problems = []
    if s.state_bucket is not None and not STATE_BUCKET.fullmatch(s.state_bucket):
        problems.append(f"state_bucket: {s.state_bucket!r} is not an S3 bucket name")
    if s.state_lock_table is not None and not LOCK_TABLE.fullmatch(s.state_lock_table):
        problems.append(f"state_lock_table: {s.state_lock_table!r} is not a DynamoDB table "
                        "name (3 to 255 of A-Z, a-z, 0-9, '_', '-' and '.')")
    for name in ("state_endpoint", "aws_endpoint"):
        url = getattr(s, name)
        if url is not None and not _is_http_url(url):
            problems.append(f"{name}: {url!r} is not an http(s) URL such as "
                            "http://127.0.0.1:5000")
    return problems


def _ssh_problems(s: Settings) -> list[str]:
    """What reaches ssh_config, and Terraform's provisioners with it."""
    problems = []
    if s.ssh_user is not None and not USER_NAME.fullmatch(s.ssh_user):
        problems.append(f"ssh_user: {s.ssh_user!r} is not a user name: 1 to 32 of a-z, 0-9, "
                        "'_' and '-', starting with a-z or '_'")
    # As ssh_config will read it: "~" is the home dir, whose path must pass too.
    if s.ssh_key is not None and not KEY_PATH.fullmatch(os.path.expanduser(s.ssh_key)):
        problems.append(f"ssh_key: {s.ssh_key!r} must be a path of letters, digits and "
                        "._/~+@,- (no spaces, quotes, '%' or '$')")
    if s.key_name is not None and not KEY_NAME.fullmatch(s.key_name):
        problems.append(f"key_name: {s.key_name!r} must be 1 to 255 printable ASCII characters")
    # Made absolute as every path under it will be: the working dir counts too.
    if not STATE_PATH.fullmatch(os.path.abspath(s.state_dir)):
        problems.append(f"state_dir: {s.state_dir!r} must be a path of letters, digits and "
                        "'.', '_', '-', '/' (ssh_config and terraform/local read paths in it)")
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
    if not LOG_SIZE.fullmatch(s.docker_log_max_size):
        problems.append(f"docker_log_max_size: {s.docker_log_max_size!r} is not a size such as "
                        "10m, 512k or 1g")
    if s.backup_keep < 1:
        problems.append(f"backup_keep: {s.backup_keep} must be 1 or more (the backup just taken)")
    if not 1 <= s.docker_log_max_file <= MAX_LOG_FILES:
        problems.append(f"docker_log_max_file: {s.docker_log_max_file} must be from 1 to "
                        f"{MAX_LOG_FILES}")
    return problems


def _account_problems(s: Settings) -> list[str]:
    """The aws settings of a real account: network, published ports, machines, tags."""
    return (_network_problems(s) + _port_problems(s) + _machine_problems(s) + _spot_problems(s)
            + tag_problems(s.tags))


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


def _spot_problems(s: Settings) -> list[str]:
    """terraform/aws/variables.tf (worker_spot_max_price) refuses the same."""
    price = s.worker_spot_max_price
    if price is None:
        return []
    if not re.fullmatch(r"[0-9]+(\.[0-9]{1,6})?", price):
        return [f"worker_spot_max_price: {price!r} is not a price in USD such as 0.0125"]
    if not s.worker_spot:
        return ["worker_spot_max_price: it caps spot workers only: set worker_spot too"]
    return []


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
        if value is not None and not INSTANCE_TYPE.fullmatch(value):
            problems.append(f"{name}: {value!r} is not an EC2 instance type such as t3.small")
    if (s.iam_instance_profile is not None
            and not INSTANCE_PROFILE.fullmatch(s.iam_instance_profile)):
        problems.append(f"iam_instance_profile: {s.iam_instance_profile!r} is not an instance "
                        "profile's name (up to 128 letters, digits and +=,.@_-; not its ARN)")
    if not 8 <= s.root_volume_size <= 16384:
        problems.append(f"root_volume_size: {s.root_volume_size} must be from 8 to 16384 (GiB)")
    if (s.root_volume_kms_key_id is not None
            and not KMS_KEY_ARN.fullmatch(s.root_volume_kms_key_id)):
        problems.append(f"root_volume_kms_key_id: {s.root_volume_kms_key_id!r} is not a KMS key "
                        "ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>")
    if (s.unlock_key_kms_key_id is not None
            and not KMS_KEY_ARN.fullmatch(s.unlock_key_kms_key_id)):
        problems.append(f"unlock_key_kms_key_id: {s.unlock_key_kms_key_id!r} is not a KMS key "
                        "ARN such as arn:aws:kms:us-east-1:123456789012:key/<id>")
    return problems


def _is_http_url(text: str) -> bool:
    if CONTROL.search(text) or " " in text:  # urlsplit drops line breaks and tabs silently
        return False
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
