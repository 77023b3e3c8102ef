"""The swarm's overlay address pool is chosen outside the VPC's networks (issue 16, point 10)."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest

from swarmforge.errors import ConfigError
from swarmforge.targets.aws import client
from swarmforge.targets.aws.address_pool import choose_pool, vpc_cidrs

REGION = "eu-west-1"


@pytest.mark.parametrize(("vpc", "pool"), [
    (["172.31.0.0/16"], ""),  # the default VPC: Docker's own 10.0.0.0/8 overlaps nothing
    (["192.168.0.0/16", "172.20.0.0/16"], ""),
    (["10.0.0.0/16"], "10.1.0.0/16"),
    (["10.0.0.0/16", "10.1.0.0/16", "10.2.128.0/17"], "10.3.0.0/16"),
    (["10.1.0.0/16"], "10.0.0.0/16"),
    (["10.0.0.0/8"], "100.64.0.0/16"),
    (["10.0.0.0/8", "100.64.0.0/10"], "172.16.0.0/16"),
    (["10.0.0.0/8", "100.64.0.0/11", "100.96.0.0/16"], "100.97.0.0/16"),
    (["10.0.0.0/16", "2600:1f18::/56"], "10.1.0.0/16"),  # an IPv6 network takes nothing of it
])
def test_the_pool_overlaps_no_network_of_the_vpc(vpc: list[str], pool: str) -> None:
    chosen = choose_pool(vpc)

    assert chosen == pool
    if chosen:
        assert not any(ip_network(chosen).overlaps(ip_network(cidr)) for cidr in vpc
                       if ":" not in cidr)


def test_a_vpc_that_leaves_no_pool_is_one_line() -> None:
    with pytest.raises(ConfigError) as refused:
        choose_pool(["10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12"])

    assert len(refused.value.problems) == 1
    assert "leave no /16 for the swarm's overlay networks" in refused.value.problems[0]


# --- the VPC as EC2 describes it (moto) ----------------------------------------------------


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


def test_a_10_x_vpc_gets_a_pool_beside_it(ec2: Any) -> None:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.associate_vpc_cidr_block(VpcId=vpc, CidrBlock="10.1.0.0/16")

    cidrs = vpc_cidrs(ec2, vpc, REGION)

    assert sorted(cidrs) == ["10.0.0.0/16", "10.1.0.0/16"]
    assert choose_pool(cidrs) == "10.2.0.0/16"


def test_without_a_vpc_id_the_default_vpc_counts(ec2: Any) -> None:
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]

    assert vpc_cidrs(ec2, None, REGION) == [default["CidrBlock"]]


def test_a_vpc_that_does_not_exist_is_one_line(ec2: Any) -> None:
    with pytest.raises(ConfigError) as refused:
        vpc_cidrs(ec2, "vpc-0123456789abcdef0", REGION)

    assert refused.value.problems == [f"vpc_id: no VPC vpc-0123456789abcdef0 in {REGION}"]
