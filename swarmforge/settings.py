"""A cluster's settings: read once from Invoke's config and the task's flags, validated, frozen.

Precedence: a flag given on the command line beats ``swarmforge.*`` in
``invoke.yaml`` (or ``INVOKE_SWARMFORGE_*`` in the environment), which beats the
defaults here. Every problem is reported, one line each, before anything runs.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from swarmforge.errors import ConfigError

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
    parallelism: int = 10
    terraform_bin: str | None = None  # None: `terraform` on PATH if new enough, else ours
    state_dir: str = str(REPO_ROOT / ".swarmforge")
    health_timeout: float = 180.0
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
    values, problems = _coerce(merged)
    if problems:
        raise ConfigError(problems)
    settings = Settings(**values)
    problems = validate(settings)
    if problems:
        raise ConfigError(problems)
    return settings


def _coerce(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Turn strings from flags, YAML and the environment into the fields' types."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in raw.items():
        try:
            values[name] = _as_type(name, value)
        except (TypeError, ValueError):
            problems.append(f"{name}: {value!r} is not a valid {_type_word(name)}")
    return values, problems


def _as_type(name: str, value: Any) -> Any:
    kind = _type_word(name)
    if kind == "whole number":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(str(value).strip())
    if kind == "number":
        return float(value)
    if kind == "true/false":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1"):
            return True
        if str(value).lower() in ("false", "no", "0"):
            return False
        raise ValueError(value)
    if kind == "list":
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    return str(value)


def _type_word(name: str) -> str:
    return {"managers": "whole number", "workers": "whole number", "parallelism": "whole number",
            "health_timeout": "number", "allow_even_managers": "true/false",
            "worker_public_ip": "true/false", "allowed_ssh_cidrs": "list",
            "docker_log_max_file": "whole number", "preload_images": "list"}.get(name, "text")


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
    problems += _cidr_problems(s.allowed_ssh_cidrs)
    if s.aws_endpoint is not None and not _is_http_url(s.aws_endpoint):
        problems.append(f"aws_endpoint: {s.aws_endpoint!r} is not an http(s) URL such as "
                        "http://127.0.0.1:5000")
    if not 1 <= s.parallelism <= 100:
        problems.append(f"parallelism: {s.parallelism} must be from 1 to 100")
    problems += _log_rotation_problems(s)
    if s.health_timeout <= 0:
        problems.append("health_timeout: must be more than 0 seconds")
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


def _cidr_problems(cidrs: tuple[str, ...]) -> list[str]:
    problems = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            problems.append(f"allowed_ssh_cidrs: {cidr!r} is not a network such as 203.0.113.0/24")
            continue
        if network.prefixlen == 0:
            problems.append(f"allowed_ssh_cidrs: {cidr} opens SSH to the whole internet; "
                            "name your own networks")
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
    return value
