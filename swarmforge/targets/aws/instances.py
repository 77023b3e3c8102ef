"""The cluster's EC2 instances as EC2 sees them now: one DescribeInstances for every node.

terraform/aws tags each instance with Name, Cluster, Role and Slot (or Index), and
the outputs carry its instance id. An instance is found by its id (the node Terraform
made), else by its Name tag. What is read: the AMI it runs, its state, its
addresses (a stop/start gives it a new public one; a stopped one has none) and the
instance type, public address and root volume key that terraform/aws leaves alone on
a running node (``ignore_changes``: changing them would stop or replace every node at
once), which ``invoke roll`` brings to the settings one node at a time. The key is
read (DescribeVolumes, one call per 200 nodes) only when ``root_volume_kms_key_id``
names one: the account's default key has no ARN to compare with short of asking KMS.

EC2 refuses a call with more than 200 filter values (FilterLimitExceeded), so no call
here names every node: the instances are asked for by the cluster's tag (one value,
whatever the cluster's size) and the nodes picked from the answer; the root volumes by
their ids, 200 to a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from swarmforge.node_facts import NodeFacts
from swarmforge.nodes import NodeRef
from swarmforge.settings import Settings

GONE = ("shutting-down", "terminated")
#: The most filter values EC2 takes in one call.
FILTER_VALUES_MAX = 200


def cluster_instances(ec2: Any, cluster: str, filters: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The instances terraform/aws tagged for ``cluster`` that also match ``filters``."""
    wanted = [{"Name": name, "Values": values}
              for name, values in {"tag:Cluster": [cluster], **filters}.items()]
    pages = ec2.get_paginator("describe_instances").paginate(Filters=wanted)
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def tag(instance: dict[str, Any], key: str) -> str | None:
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), None)


def node_facts(ec2: Any, settings: Settings, refs: Sequence[NodeRef]) -> dict[str, NodeFacts]:
    """{node name: its facts} for the nodes of ``refs`` that EC2 knows, in one call (more
    with ``root_volume_kms_key_id`` set: one per 200 nodes)."""
    if not refs:
        return {}
    # Every instance of the cluster: naming the nodes would exceed EC2's filter limit.
    instances = cluster_instances(ec2, settings.cluster, {})
    by_id = {i["InstanceId"]: i for i in instances}
    by_name = {tag(i, "Name"): i for i in instances if i["State"]["Name"] not in GONE}
    found = {ref: instance for ref in refs
             if (instance := by_id.get(ref.id) or by_name.get(ref.name)) is not None}
    keys = root_volume_keys(ec2, list(found.values())) if settings.root_volume_kms_key_id else {}
    return {ref.name: _facts(instance, ref.role, settings, keys) for ref, instance in found.items()}


def _facts(instance: dict[str, Any], role: str, s: Settings, keys: dict[str, str]) -> NodeFacts:
    public, private = instance.get("PublicIpAddress"), instance.get("PrivateIpAddress")
    # As terraform/aws's outputs choose: a private worker is reached at its private address.
    reached_publicly = role == "manager" or s.worker_public_ip
    found = drift(instance, role, s)
    want, have = s.root_volume_kms_key_id, keys.get(instance["InstanceId"])
    if want and have is not None and have != want:
        found.append(f"root volume key {have or '(the account default)'}, settings want {want}")
    return NodeFacts(image=instance.get("ImageId"), state=instance["State"]["Name"],
                     private_ip=private, ssh_host=(public if reached_publicly else None) or private,
                     drift=tuple(found))


def root_volume_keys(ec2: Any, instances: Sequence[dict[str, Any]]) -> dict[str, str]:
    """{instance id: its root volume's KMS key ARN ("" if it has none)}, one call per 200."""
    roots = {m["Ebs"]["VolumeId"]: i["InstanceId"] for i in instances
             for m in i.get("BlockDeviceMappings", [])
             if m.get("DeviceName") == i.get("RootDeviceName") and "Ebs" in m}
    # A filter, not VolumeIds: a volume gone since the instances were read is no error.
    ids = list(roots)
    chunks = [ids[start:start + FILTER_VALUES_MAX] for start in range(0, len(ids), FILTER_VALUES_MAX)]
    paginator = ec2.get_paginator("describe_volumes")
    return {roots[v["VolumeId"]]: v.get("KmsKeyId") or ""
            for chunk in chunks
            for page in paginator.paginate(Filters=[{"Name": "volume-id", "Values": chunk}])
            for v in page["Volumes"]}


def wanted_instance_type(role: str, s: Settings) -> str:
    """The instance type the settings give a node of ``role`` (as terraform/aws's locals do)."""
    own = s.manager_instance_type if role == "manager" else s.worker_instance_type
    return own or s.instance_type


def drift(instance: dict[str, Any], role: str, s: Settings) -> list[str]:
    """How a running instance differs from what the settings would launch now, where
    terraform/aws ignores the difference; each line says what it is and what is wanted."""
    found = []
    have, want = instance.get("InstanceType"), wanted_instance_type(role, s)
    if have and have != want:
        found.append(f"instance type {have}, settings want {want}")
    if role == "worker" and instance["State"]["Name"] == "running":
        public = instance.get("PublicIpAddress")
        if public and not s.worker_public_ip:
            found.append(f"public address {public}, settings want none (worker_public_ip: false)")
        elif not public and s.worker_public_ip:
            found.append("no public address, settings want one (worker_public_ip: true)")
    return found
