"""The swarm's overlay address pool, outside every network of the cluster's VPC.

``docker swarm init`` gives overlay networks /24 subnets of 10.0.0.0/8 unless
told otherwise. Most VPCs made by hand are in 10.x too, and an overlay subnet
that shadows part of the VPC makes containers unable to reach the hosts, load
balancers and endpoints at those addresses. So the pool stays Docker's default
when that overlaps nothing of the VPC, and is otherwise the first /16, from the
ranges below, that overlaps none of the VPC's networks. The choice is read
once, by the first manager's ``swarm init``: a swarm keeps the pool it was made
with (terraform/aws's swarm_default_addr_pool says so).
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, ip_network
from typing import Any

from botocore.exceptions import ClientError

from swarmforge.errors import ConfigError

DOCKER_DEFAULT_POOL = IPv4Network("10.0.0.0/8")
#: The size of a chosen pool: 256 overlay networks of /24 (swarm-node.sh's mask length).
POOL_PREFIX = 16
# Where a pool is looked for when Docker's default overlaps the VPC, in order:
# the rest of 10/8, then the shared address space (RFC 6598), then the one /16
# of 172.16/12 that Docker's own bridge networks (172.17-31, 192.168) never take.
CANDIDATE_RANGES = (DOCKER_DEFAULT_POOL, IPv4Network("100.64.0.0/10"), IPv4Network("172.16.0.0/16"))
# A VPC network counts while it is, or is becoming, part of the VPC.
LIVE_STATES = ("associated", "associating")


def choose_pool(vpc_cidrs: Iterable[str]) -> str:
    """"" (Docker's default pool) when 10.0.0.0/8 overlaps none of ``vpc_cidrs``, else the
    first /16 of CANDIDATE_RANGES that overlaps none; ConfigError when every one does."""
    taken = [ip_network(cidr, strict=False) for cidr in vpc_cidrs]
    taken4 = [network for network in taken if isinstance(network, IPv4Network)]
    if not any(network.overlaps(DOCKER_DEFAULT_POOL) for network in taken4):
        return ""
    for candidate in CANDIDATE_RANGES:
        for pool in candidate.subnets(new_prefix=POOL_PREFIX):
            if not any(network.overlaps(pool) for network in taken4):
                return str(pool)
    raise ConfigError([f"vpc_id: the VPC's networks ({', '.join(map(str, taken4))}) leave no /16 "
                       "for the swarm's overlay networks in 10.0.0.0/8, 100.64.0.0/10 or "
                       "172.16.0.0/16"])


def vpc_cidrs(ec2: Any, vpc_id: str | None, region: str) -> list[str]:
    """The IPv4 networks of ``vpc_id``, or of the region's default VPC when it is None."""
    try:
        if vpc_id:
            vpcs = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        else:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidVpcID.NotFound":
            raise
        vpcs = []
    if not vpcs:
        raise ConfigError([f"vpc_id: no VPC {vpc_id} in {region}" if vpc_id else
                           f"vpc_id: {region} has no default VPC: set vpc_id and subnet_ids"])
    live = [association["CidrBlock"] for association in vpcs[0].get("CidrBlockAssociationSet", [])
            if association.get("CidrBlockState", {}).get("State") in LIVE_STATES]
    return live or [vpcs[0]["CidrBlock"]]
