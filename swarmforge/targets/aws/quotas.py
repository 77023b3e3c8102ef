"""The account's On-Demand vCPU quotas, against what the cluster will run at its busiest.

EC2 limits running On-Demand instances by vCPUs per family group, per region
(Service Quotas, service ``ec2``). A cluster at its busiest runs every node,
one more while ``roll`` or ``replace-node`` makes a node's successor before the
old one leaves, and the bake's builder while the scheduled rebuild runs. Other
instances of the account already hold part of the quota; this cluster's own
nodes are counted once, as wanted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

# "Running On-Demand ... instances", by the letters an instance type starts with
# (the Service Quotas console of the ec2 service lists these codes).
STANDARD = "L-1216C47A"
QUOTA_CODES = {
    **dict.fromkeys("acdhimrtz", STANDARD),
    "dl": "L-6E869C2A", "f": "L-74FC7D96", "g": "L-DB2E81BA", "vt": "L-DB2E81BA",
    "hpc": "L-F7808C92", "inf": "L-1945791B", "p": "L-417A185B", "trn": "L-2C3B7624",
    "u": "L-43DA4232", "x": "L-7295265B",
}
QUOTA_NAMES = {
    STANDARD: "Standard (A, C, D, H, I, M, R, T, Z)", "L-6E869C2A": "DL", "L-74FC7D96": "F",
    "L-DB2E81BA": "G and VT", "L-F7808C92": "HPC", "L-1945791B": "Inf", "L-417A185B": "P",
    "L-2C3B7624": "Trn", "L-43DA4232": "High Memory", "L-7295265B": "X",
}
# Mac instances run on Dedicated Hosts only: a quota of hosts, not of vCPUs.
NO_VCPU_QUOTA = {"mac"}
#: DescribeInstanceTypes takes at most this many types at once.
TYPES_PER_CALL = 100
# What holds quota: instances on their way up or running (stopped ones hold none).
HOLDING = ["pending", "running"]


def quota_code(instance_type: str) -> str | None:
    """The On-Demand vCPU quota an instance type counts against; None when unknown."""
    letters = re.match(r"[a-z]+", instance_type)
    family = letters.group(0) if letters else ""
    if family in NO_VCPU_QUOTA:
        return None
    return QUOTA_CODES.get(family) or QUOTA_CODES.get(family[:1])


@dataclass(frozen=True)
class Need:
    """What the cluster runs at its busiest: instance types and how many of each."""

    nodes: Mapping[str, int]  # {instance type: count}, managers and workers as wanted
    surge: tuple[str, ...]  # the types a node's successor may have (one at a time)
    builder: str  # the bake's build instance


def vcpus_needed(need: Need, vcpus: Mapping[str, int]) -> dict[str, int]:
    """{quota code: vCPUs} at the busiest: every node, the largest possible surge node of
    each quota, and the builder."""
    needed: Counter[str] = Counter()
    for instance_type, count in need.nodes.items():
        needed[_code(instance_type)] += count * vcpus[instance_type]
    surges: dict[str, int] = {}
    for instance_type in need.surge:
        code = _code(instance_type)
        surges[code] = max(surges.get(code, 0), vcpus[instance_type])
    needed.update(surges)
    needed[_code(need.builder)] += vcpus[need.builder]
    return {code: total for code, total in needed.items() if code}


def _code(instance_type: str) -> str:
    return quota_code(instance_type) or ""


def instance_vcpus(ec2: Any, instance_types: Iterable[str]) -> dict[str, int]:
    """{instance type: its default vCPUs}, as EC2 describes the types (100 per call at most)."""
    wanted = sorted(set(instance_types))
    found: dict[str, int] = {}
    for start in range(0, len(wanted), TYPES_PER_CALL):
        pages = ec2.get_paginator("describe_instance_types").paginate(
            InstanceTypes=wanted[start:start + TYPES_PER_CALL])
        found.update({t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
                      for page in pages for t in page["InstanceTypes"]})
    return found


def others_in_use(ec2: Any, cluster: str) -> Counter[str]:
    """{instance type: count} of the region's On-Demand instances that hold quota and are
    not this cluster's (its nodes are counted as wanted instead)."""
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-state-name", "Values": HOLDING}])
    return Counter(i["InstanceType"] for page in pages for r in page["Reservations"]
                   for i in r["Instances"]
                   if i.get("InstanceLifecycle") != "spot" and _cluster_of(i) != cluster)


def _cluster_of(instance: Mapping[str, Any]) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == "Cluster"), None)


def read_quota(quotas: Any, code: str) -> float | str:
    """The quota's value in vCPUs, or why it cannot be read (an error code)."""
    try:
        return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
    except ClientError as error:
        return str(error.response.get("Error", {}).get("Code", "an error"))


def quota_problems(need: Need, ec2: Any, quotas: Any, cluster: str, region: str,
                   say: Callable[[str], None]) -> list[str]:
    """One line per quota the cluster would exceed at its busiest; a note through ``say``
    for each quota that cannot be read (it is then not checked)."""
    in_use = others_in_use(ec2, cluster)
    types = {*need.nodes, *need.surge, need.builder, *in_use}
    vcpus = instance_vcpus(ec2, types)
    used: Counter[str] = Counter()
    for instance_type, count in in_use.items():
        used[_code(instance_type)] += count * vcpus.get(instance_type, 0)
    problems = []
    for code, wanted in sorted(vcpus_needed(need, vcpus).items()):
        name = f"Running On-Demand {QUOTA_NAMES[code]} instances ({code})"
        quota = read_quota(quotas, code)
        if isinstance(quota, str):
            say(f"vCPU quota {name} in {region} not checked: Service Quotas answered {quota}")
        elif used[code] + wanted > quota:
            problems.append(
                f"instance types: the vCPU quota {name} in {region} is {quota:g}; this cluster "
                f"needs {wanted} at its busiest ({_described(need)}) and other instances use "
                f"{used[code]}: ask for more in Service Quotas, or choose smaller instance types")
    return problems


def _described(need: Need) -> str:
    nodes = ", ".join(f"{count} x {instance_type}" for instance_type, count in need.nodes.items())
    return f"{nodes}, one more node while one is replaced, the bake's {need.builder} builder"
