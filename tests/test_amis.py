"""A cluster's AMIs, against moto's server on loopback (real HTTP, real boto3).

moto deletes a snapshot as soon as its AMI is gone and reads an SSM parameter
back at once; AWS does neither. Where a test needs AWS's late answers, an
Intercept (tests/test_aws_retries.py) gives them on the client the code under
test uses, and an injected sleep records the waits instead of sleeping them.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from swarmforge.catalog import Image, plan_prune
from swarmforge.errors import AmiError
from swarmforge.settings import Settings, load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.amis import (
    CLUSTER_TAG,
    COMMIT_TAG,
    DOCKER_TAG,
    PRUNED_TAG,
    BakeRecord,
    ClusterAmis,
    Patience,
    parameter_name,
    record_path,
)
from swarmforge.targets.aws.bake import _record_everywhere
from tests.test_aws_retries import Answer, Clock, Intercept, ec2_error, json_answer

REGION = "eu-west-1"
BASE_AMI = "ami-03cf127a"  # one of the public AMIs moto ships


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def amis(endpoint: str, clock: Clock) -> ClusterAmis:
    return ClusterAmis(f"test-{uuid.uuid4().hex[:8]}", REGION, endpoint,
                       Patience(budget=10, sleep=clock.sleep))


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


def snapshots_of(ec2: Any, ami_id: str) -> list[str]:
    (image,) = ec2.describe_images(ImageIds=[ami_id])["Images"]
    return sorted(m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m)


def tags_of(ec2: Any, snapshot_id: str) -> dict[str, str]:
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    return {tag["Key"]: tag["Value"] for tag in snapshot.get("Tags", [])}


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
    assert len(snapshots) == len(ami.snapshot_ids)  # every one of them checked below
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
        assert ami.snapshot_ids, ami  # else all() below holds of nothing
        assert all(snapshot_exists(ec2, s) != gone for s in ami.snapshot_ids)
    assert amis.snapshots_left == ()


def test_prune_stops_when_an_ami_got_used_since_the_plan(
    amis: ClusterAmis, baker: Baker, ec2: Any
) -> None:
    old, _new = baker.bake(), baker.bake()
    plan = plan_prune(amis.inventory(), keep=1, current_id=None, in_use=set())
    launch(ec2, old)  # someone rolled back onto it meanwhile

    with pytest.raises(AmiError, match=f"{old} became current or in use"):
        amis.prune(plan)
    assert len(amis.inventory()) == 2


# --- snapshots EC2 still holds after their AMI is gone --------------------------------------

IN_USE = ec2_error("InvalidSnapshot.InUse", "The snapshot is currently in use by an AMI")


def test_prune_retries_a_snapshot_ec2_still_holds(
    amis: ClusterAmis, baker: Baker, ec2: Any, clock: Clock
) -> None:
    old, _new = baker.bake(), baker.bake()
    snapshots = snapshots_of(ec2, old)
    held = Intercept(amis.ec2, "DeleteSnapshot", IN_USE, times=2)

    assert amis.prune(plan_prune(amis.inventory(), keep=1, current_id=None, in_use=())) == [old]

    assert held.attempts == 2 + len(snapshots)  # refused twice, then each deleted
    assert len(clock.waits) == 2
    assert not any(snapshot_exists(ec2, s) for s in snapshots)
    assert amis.snapshots_left == ()


def test_snapshots_still_held_are_left_marked_and_the_next_prune_deletes_them(
    amis: ClusterAmis, baker: Baker, ec2: Any, clock: Clock, endpoint: str
) -> None:
    old, new = baker.bake(), baker.bake()
    snapshots = snapshots_of(ec2, old)
    assert snapshots  # else snapshots_left == () and the loop below would hold of nothing
    Intercept(amis.ec2, "DeleteSnapshot", IN_USE)  # for longer than the patience

    assert amis.prune(plan_prune(amis.inventory(), keep=1, current_id=None, in_use=())) == [old]

    assert [ami.id for ami in amis.inventory()] == [new]
    assert amis.snapshots_left == tuple(snapshots)
    assert sum(clock.waits) == pytest.approx(10)  # the whole budget, and no more
    for snapshot in snapshots:
        assert tags_of(ec2, snapshot) == {CLUSTER_TAG: amis.cluster, PRUNED_TAG: old}

    later = ClusterAmis(amis.cluster, REGION, endpoint, Patience(sleep=clock.sleep))
    assert later.prune(later.prune_plan(keep=1)) == []  # nothing of its own to prune

    assert not any(snapshot_exists(ec2, s) for s in snapshots)
    assert later.snapshots_left == ()


def test_the_next_prune_deletes_only_marked_snapshots_of_its_cluster_no_ami_uses(
    amis: ClusterAmis, baker: Baker, ec2: Any
) -> None:
    live = baker.bake()
    (still_used,) = snapshots_of(ec2, live)
    orphan = volume_snapshot(ec2, {CLUSTER_TAG: amis.cluster, PRUNED_TAG: "ami-0123456789abcdef0"})
    backup = volume_snapshot(ec2, {CLUSTER_TAG: amis.cluster})  # a node's backup, say
    theirs = volume_snapshot(ec2, {CLUSTER_TAG: "someone-else", PRUNED_TAG: "ami-0123456789abcdef0"})
    # A prune that was stopped between marking and deregistering.
    ec2.create_tags(Resources=[still_used], Tags=[{"Key": PRUNED_TAG, "Value": live}])

    assert amis.prune(amis.prune_plan(keep=1)) == []

    assert not snapshot_exists(ec2, orphan)
    assert all(snapshot_exists(ec2, s) for s in (still_used, backup, theirs))
    assert amis.snapshots_left == ()  # spared on purpose, not left over


def volume_snapshot(ec2: Any, tags: dict[str, str]) -> str:
    volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=8)["VolumeId"]
    spec = [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    snapshot_id: str = ec2.create_snapshot(VolumeId=volume, TagSpecifications=spec)["SnapshotId"]
    return snapshot_id


# --- the AMI of record --------------------------------------------------------------------


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


def test_recording_waits_until_ssm_reads_the_ami_back(
    amis: ClusterAmis, baker: Baker, clock: Clock
) -> None:
    first, second = baker.bake(), baker.bake()
    amis.record_current(first)
    assert clock.waits == []  # moto reads back at once: no wait
    checking = Intercept(amis.ssm, "GetParameter", still_reads(amis, first), times=3)

    amis.record_current(second)

    assert checking.attempts == 4  # the old value three times, then the new one
    assert len(clock.waits) == 3
    assert amis.current() == second


def test_an_ami_ssm_never_reads_back_is_one_clear_line(
    amis: ClusterAmis, baker: Baker, clock: Clock
) -> None:
    first, second = baker.bake(), baker.bake()
    amis.record_current(first)
    Intercept(amis.ssm, "GetParameter", still_reads(amis, first))

    with pytest.raises(AmiError) as refused:
        amis.record_current(second)

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{second} was baked, but SSM in {REGION} did not take it")
    assert f"still reads {first}" in message
    assert (f"`aws ssm put-parameter --region {REGION} --name {parameter_name(amis.cluster)} "
            f"--type String --data-type aws:ec2:image --overwrite --value {second}`") in message
    assert "`invoke bake` again" in message
    assert sum(clock.waits) == pytest.approx(10)


def still_reads(amis: ClusterAmis, ami_id: str) -> Answer:
    """SSM's answer to GetParameter while it has not taken the new value yet."""
    return json_answer(200, {"Parameter": {
        "Name": parameter_name(amis.cluster), "Type": "String", "Value": ami_id, "Version": 1,
        "DataType": "aws:ec2:image", "ARN": f"arn:aws:ssm:{REGION}:123456789012:parameter"
                                            f"{parameter_name(amis.cluster)}"}})


def test_a_bake_records_the_clusters_own_region_last(
    amis: ClusterAmis, baker: Baker, endpoint: str, tmp_path: Path
) -> None:
    settings: Settings = load_settings({}, {"cluster": amis.cluster, "region": REGION,
                                            "state_dir": str(tmp_path), "aws_endpoint": endpoint})
    home = baker.bake()
    # us-east-1 sorts after eu-west-1, yet is recorded first; SSM refuses it here.
    record = BakeRecord(cluster=amis.cluster, amis={REGION: home, "us-east-1": "ami-0000000000000dead"},
                        docker_version="27.*", git_commit="c", packer_run_uuid="u",
                        baked_at="2026-01-01T00:00:00+00:00", log="packer.log")

    with pytest.raises(AmiError, match="not found in us-east-1"):
        _record_everywhere(settings, record)

    assert amis.current() is None  # apply's AMI is still the last good bake's
    assert not record_path(settings).exists()


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
