"""A cluster's AMIs, against moto's server on loopback (real HTTP, real boto3)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from botocore.exceptions import ClientError

from swarmforge.catalog import Image, plan_prune
from swarmforge.errors import AmiError
from swarmforge.targets.aws import client
from swarmforge.targets.aws.amis import (
    CLUSTER_TAG,
    COMMIT_TAG,
    DOCKER_TAG,
    ClusterAmis,
    parameter_name,
)

REGION = "eu-west-1"
BASE_AMI = "ami-03cf127a"  # one of the public AMIs moto ships


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


@pytest.fixture
def amis(endpoint: str) -> ClusterAmis:
    return ClusterAmis(f"test-{uuid.uuid4().hex[:8]}", REGION, endpoint)


class Baker:
    """Makes AMIs the way a bake leaves them: from an instance, tagged for the cluster."""

    def __init__(self, ec2: Any, cluster: str) -> None:
        self.ec2 = ec2
        self.cluster = cluster
        self.count = 0

    def bake(self, docker: str = "27.3.*") -> str:
        self.count += 1
        instance = launch(self.ec2, BASE_AMI)
        # moto stamps whole seconds: the timestamp in the name orders same-second AMIs.
        name = f"swarmforge-{self.cluster}-docker-20260101-0000{self.count:02d}"
        ami_id: str = self.ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
        self.ec2.terminate_instances(InstanceIds=[instance])
        tags = {CLUSTER_TAG: self.cluster, DOCKER_TAG: docker, COMMIT_TAG: f"commit{self.count}"}
        self.ec2.create_tags(
            Resources=[ami_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
        return ami_id


def launch(ec2: Any, ami_id: str) -> str:
    answer = ec2.run_instances(ImageId=ami_id, MinCount=1, MaxCount=1)
    instance_id: str = answer["Instances"][0]["InstanceId"]
    return instance_id


@pytest.fixture
def baker(ec2: Any, amis: ClusterAmis) -> Baker:
    return Baker(ec2, amis.cluster)


def snapshot_exists(ec2: Any, snapshot_id: str) -> bool:
    try:
        ec2.describe_snapshots(SnapshotIds=[snapshot_id])
    except ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
        return False
    return True


# --- against the API -------------------------------------------------------------------


def test_newest_is_the_latest_bake(amis: ClusterAmis, baker: Baker) -> None:
    assert amis.newest() is None
    baker.bake()
    latest = baker.bake(docker="~=27.3")

    newest = amis.newest()

    assert newest is not None
    assert (newest.id, newest.docker_version, newest.git_commit) == (latest, "~=27.3", "commit2")


def test_other_clusters_amis_are_not_ours(amis: ClusterAmis, ec2: Any) -> None:
    Baker(ec2, "someone-else").bake()
    assert amis.inventory() == []


def test_tag_reaches_the_ami_and_its_snapshots(amis: ClusterAmis, ec2: Any) -> None:
    instance = launch(ec2, BASE_AMI)
    ami_id = ec2.create_image(InstanceId=instance, Name="built-by-packer")["ImageId"]

    amis.tag(ami_id, {CLUSTER_TAG: amis.cluster, "swarmforge:packer-run": "run-1"})

    (ami,) = amis.inventory()
    assert ami.id == ami_id and ami.snapshot_ids
    snapshots = ec2.describe_snapshots(SnapshotIds=list(ami.snapshot_ids))["Snapshots"]
    for snapshot in snapshots:
        assert {"Key": "swarmforge:packer-run", "Value": "run-1"} in snapshot["Tags"]


def test_tagging_a_missing_ami_fails_clearly(amis: ClusterAmis) -> None:
    with pytest.raises(AmiError, match="ami-0000000000000dead not found"):
        amis.tag("ami-0000000000000dead", {"a": "b"})


def test_inventory_marks_amis_in_use(amis: ClusterAmis, baker: Baker, ec2: Any) -> None:
    running, stopped, gone, idle = (baker.bake() for _ in range(4))
    launch(ec2, running)
    ec2.stop_instances(InstanceIds=[launch(ec2, stopped)])
    ec2.terminate_instances(InstanceIds=[launch(ec2, gone)])

    listed = amis.inventory()

    assert [ami.id for ami in listed] == [idle, gone, stopped, running]  # newest first
    assert {ami.id for ami in listed if ami.in_use} == {running, stopped}


def test_prune_keeps_current_in_use_and_newest(amis: ClusterAmis, baker: Baker, ec2: Any) -> None:
    oldest, in_use, current, old, newest = (baker.bake() for _ in range(5))
    launch(ec2, in_use)
    amis.record_current(current)
    listed = amis.inventory()

    busy = {ami.id for ami in listed if ami.in_use}
    plan = plan_prune(listed, keep=1, current_id=amis.current(), in_use=busy)
    deleted = amis.prune(plan)

    assert sorted(deleted) == sorted([oldest, old])
    assert {ami.id: why for ami, why in plan.keep} == {
        newest: "among the newest",
        current: "current",
        in_use: "in use",
    }
    assert [ami.id for ami in amis.inventory()] == [newest, current, in_use]
    for ami in listed:
        gone = ami.id in deleted
        assert all(snapshot_exists(ec2, s) != gone for s in ami.snapshot_ids)


def test_prune_stops_when_an_ami_got_used_since_the_plan(
    amis: ClusterAmis, baker: Baker, ec2: Any
) -> None:
    old, _new = baker.bake(), baker.bake()
    plan = plan_prune(amis.inventory(), keep=1, current_id=None, in_use=set())
    launch(ec2, old)  # someone rolled back onto it meanwhile

    with pytest.raises(AmiError, match=f"{old} became current or in use"):
        amis.prune(plan)
    assert len(amis.inventory()) == 2


def test_current_ami_round_trips_through_ssm(
    amis: ClusterAmis, baker: Baker, endpoint: str
) -> None:
    assert amis.current() is None
    first, second = baker.bake(), baker.bake()

    amis.record_current(first)
    amis.record_current(second)

    assert amis.current() == second
    ssm = client("ssm", REGION, endpoint)
    assert (
        ssm.get_parameter(Name=f"/swarmforge/{amis.cluster}/ami-id")["Parameter"]["Value"] == second
    )


def test_recording_a_missing_ami_is_refused(amis: ClusterAmis) -> None:
    with pytest.raises(AmiError, match="not found"):
        amis.record_current("ami-0000000000000dead")
    assert amis.current() is None


# --- the pure plan -------------------------------------------------------------------------

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def fake_amis(count: int) -> list[Image]:
    """Oldest first: ami-0 ... ami-<count-1>."""
    return [Image(f"ami-{i}", f"bake-{i}", T0 + timedelta(days=i)) for i in range(count)]


def deleted(plan_amis: list[Image], **options: Any) -> list[str]:
    return [ami.id for ami in plan_prune(plan_amis, **options).delete]


def test_plan_keeps_the_newest_n() -> None:
    assert deleted(fake_amis(5), keep=2, current_id=None, in_use=()) == ["ami-2", "ami-1", "ami-0"]


def test_plan_never_deletes_current_or_in_use() -> None:
    result = deleted(fake_amis(5), keep=0, current_id="ami-1", in_use={"ami-3"})
    assert result == ["ami-4", "ami-2", "ami-0"]


def test_plan_trusts_the_in_use_mark_of_a_listing() -> None:
    listed = fake_amis(2)
    listed[0] = Image("ami-0", "bake-0", T0, in_use=True)
    assert deleted(listed, keep=0, current_id=None, in_use=()) == ["ami-1"]


def test_plan_with_keep_larger_than_the_list_deletes_nothing() -> None:
    assert deleted(fake_amis(3), keep=10, current_id=None, in_use=()) == []


def test_plan_refuses_a_negative_keep() -> None:
    with pytest.raises(AmiError, match="keep"):
        plan_prune(fake_amis(1), keep=-1, current_id=None, in_use=())


def test_parameter_name() -> None:
    assert parameter_name("prod") == "/swarmforge/prod/ami-id"
