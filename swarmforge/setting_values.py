"""Settings as they arrive (text from flags and the environment, YAML from invoke.yaml)
turned into typed values, and the checks that need no other setting to judge a value.

settings.py holds the Settings themselves and the checks across settings.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from swarmforge.errors import ConfigError

PORT_SPEC = re.compile(r"^(\d+)(?:/([A-Za-z0-9]+))?$")  # 80, 80/tcp, 53/udp
# Tags terraform/aws sets itself (Cluster finds the nodes), and AWS's own prefix.
RESERVED_TAGS = ("Name", "Cluster", "Role", "Index", "Slot")
PORTS = "list of ports such as 80/tcp,443/tcp"
TAGS = "list of tags such as team=infra,env=prod"
Network = TypeVar("Network", ipaddress.IPv4Network, ipaddress.IPv6Network)
# The longest wait we take: a week. Past about 1e9 s every wait dies with OverflowError.
MAX_SECONDS = 7 * 24 * 3600
SECONDS = f"a number of seconds more than 0 and at most {MAX_SECONDS} (7 days)"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a line break, a tab, NUL...


@dataclass(frozen=True)
class PublicPort:
    """A port the swarm publishes to clients (the routing mesh answers on every node)."""

    port: int
    protocol: str = "tcp"
    cidrs: tuple[str, ...] = ()  # empty: public_cidrs

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"


def coerce(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
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
        return _whole(value)
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
        return tuple(str(item).strip() for item in _items(value))
    if kind == PORTS:
        return tuple(_as_port(item) for item in _items(value))
    if kind == TAGS:
        return _as_tags(value)
    return str(value)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError(value)
    return int(str(value).strip())


def _items(value: Any) -> list[Any]:
    """A list's items: "a,b" from a flag or the environment, a list from YAML; no blanks."""
    if isinstance(value, Mapping):
        raise ValueError(value)
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item for item in items if str(item).strip()]


def _as_port(item: Any) -> PublicPort:
    """``80``, ``"443/tcp"``, or in YAML ``{port: 53, protocol: udp, cidrs: [...]}``."""
    if isinstance(item, Mapping):
        if "port" not in item or set(item) - {"port", "protocol", "cidrs"}:
            raise ValueError(item)
        cidrs = tuple(str(cidr).strip() for cidr in _items(item.get("cidrs") or ()))
        return PublicPort(_whole(item["port"]), str(item.get("protocol", "tcp")).strip().lower(),
                          cidrs)
    match = PORT_SPEC.match(str(item).strip()) if not isinstance(item, bool) else None
    if not match:
        raise ValueError(item)
    return PublicPort(int(match[1]), (match[2] or "tcp").lower())


def _as_tags(value: Any) -> tuple[tuple[str, str], ...]:
    """A YAML mapping, or "key=value" items (``team=infra,env=prod``); the order kept."""
    if isinstance(value, Mapping):
        return tuple((str(key), "" if v is None else str(v)) for key, v in value.items())
    pairs = []
    for item in _items(value):
        key, equals, tag_value = str(item).partition("=")
        if not equals:
            raise ValueError(item)
        pairs.append((key.strip(), tag_value.strip()))
    return tuple(pairs)


def _type_word(name: str) -> str:
    return {"managers": "whole number", "workers": "whole number", "parallelism": "whole number",
            "health_timeout": "number", "dead_after": "number",
            "max_unhealthy_managers": "whole number", "max_unhealthy_workers": "whole number",
            "terraform_timeout": "number",
            "packer_timeout": "number", "ssh_timeout": "number", "allow_even_managers": "true/false",
            "worker_public_ip": "true/false", "allowed_ssh_cidrs": "list",
            "docker_log_max_file": "whole number", "preload_images": "list",
            "backup_keep": "whole number",
            "subnet_ids": "list", "worker_subnet_ids": "list", "create_nat_gateway": "true/false",
            "worker_spot": "true/false",
            "public_ports": PORTS, "public_cidrs": "list", "root_volume_size": "whole number",
            "tags": TAGS}.get(name, "text")


def cidr_problems(cidrs: tuple[str, ...]) -> list[str]:
    """SSH's networks: never the whole internet, neither as /0 nor in pieces (0.0.0.0/1 and
    128.0.0.0/1, or 256 /8s); terraform/aws/variables.tf refuses the same."""
    problems = []
    networks = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            problems.append(f"allowed_ssh_cidrs: {cidr!r} is not a network such as 203.0.113.0/24")
            continue
        if network.prefixlen == 0:
            problems.append(f"allowed_ssh_cidrs: {cidr} opens SSH to the whole internet; "
                            "name your own networks")
        else:
            networks.append(network)
    v4 = [n for n in networks if isinstance(n, ipaddress.IPv4Network)]
    v6 = [n for n in networks if isinstance(n, ipaddress.IPv6Network)]
    for whole, pieces in ((_whole_internet(v4), v4), (_whole_internet(v6), v6)):
        if whole:
            shown = ", ".join(map(str, pieces[:4])) + (f" and {len(pieces) - 4} more"
                                                       if len(pieces) > 4 else "")
            problems.append(f"allowed_ssh_cidrs: together, {shown} open SSH to the whole "
                            "internet; name your own networks")
    return problems


def _whole_internet(networks: Sequence[Network]) -> bool:
    """Whether ``networks`` (one IP version) together cover every address of it."""
    collapsed = list(ipaddress.collapse_addresses(networks))
    return len(collapsed) == 1 and collapsed[0].prefixlen == 0


def ipv4_problems(name: str, cidrs: tuple[str, ...]) -> list[str]:
    problems = []
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr, strict=True)
        except ValueError:
            problems.append(f"{name}: {cidr!r} is not an IPv4 network such as 198.51.100.0/24")
    return problems


def tag_problems(tags: tuple[tuple[str, str], ...]) -> list[str]:
    problems = []
    keys = [key for key, _ in tags]
    for key, value in tags:
        if CONTROL.search(key):
            problems.append(f"tags: {key!r} holds a control character")
            continue
        if CONTROL.search(value):
            problems.append(f"tags: {key!r}: {value!r} holds a control character")
        if not 1 <= len(key) <= 128:
            problems.append(f"tags: {key!r}: a key is 1 to 128 characters")
        elif key in RESERVED_TAGS:
            problems.append(f"tags: {key} is set by terraform/aws itself "
                            f"({', '.join(RESERVED_TAGS)})")
        elif key.lower().startswith("aws:"):
            problems.append(f"tags: {key}: the aws: prefix is reserved for AWS")
        if len(value) > 256:
            problems.append(f"tags: {key}: a value is at most 256 characters")
    problems += [f"tags: {key} is given twice" for key in sorted(set(keys)) if keys.count(key) > 1]
    return problems




def control_problems(name: str, values: Sequence[str]) -> list[str]:
    """Text that reaches a file, a command line or Terraform holds no control characters:
    a line break in it would start a line of its own."""
    return [f"{name}: {value!r} holds a control character" for value in values
            if CONTROL.search(value)]


# --- task flags that are not settings: text from the command line, None when not given ---


def whole_flag(flag: str, text: object, default: int, least: int) -> int:
    """``--flag``'s whole number, ``least`` or more; ConfigError (one line) for anything else."""
    if text is None:
        return default
    try:
        value = _whole(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise ConfigError([f"--{flag}: {str(text)!r} must be a whole number, {least} or more"])
    return value


def seconds_flag(flag: str, text: object, default: float) -> float:
    """``--flag``'s seconds: finite, more than 0, at most MAX_SECONDS."""
    value = _number(text, default)
    if not 0 < value <= MAX_SECONDS:  # nan and inf fail too
        raise ConfigError([f"--{flag}: {str(text)!r} must be {SECONDS}"])
    return value


def days_flag(flag: str, text: object, default: float) -> float:
    """``--flag``'s days: finite, 0 or more."""
    value = _number(text, default)
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError([f"--{flag}: {str(text)!r} must be a number of days, 0 or more"])
    return value


def _number(text: object, default: float) -> float:
    if text is None:
        return default
    try:
        return float(str(text))
    except ValueError:
        return math.nan  # refused by every range
