"""The nodes as EC2 sees them now, against moto's server (real HTTP, real boto3): drift from
the settings, addresses after a stop/start, stopped nodes (issue 16, points 2 and 3).

Instances are launched with boto3 and tagged as terraform/aws tags its nodes (Name,
Cluster, Role, Slot or Index); the refs are what Terraform's outputs would say. moto,
as EC2 does, gives an instance a new public address when it is started again and
none while it is stopped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ClientError

from swarmforge.node_facts import NodeFacts, refreshed
from swarmforge.nodes import NodeRef
from swarmforge.operation import RollRecord
from swarmforge.picks import out_of_date
from swarmforge.roll import _plan
from swarmforge.settings import Settings, load_settings
from swarmforge.swarm import node_table, parse_nodes
from swarmforge.targets.aws import client
from swarmforge.targets.aws.instances import node_facts
from swarmforge.targets.aws.target import AwsTarget
from swarmforge.targets.local.target import LocalTarget
from tests.conftest import unique_cluster
from tests.test_aws_retries import ec2_error

REGION = "eu-west-1"
DATA = Path(__file__).parent / "data"


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


@pytest.fixture(scope="module")
def image(endpoint: str) -> str:
    """An AMI moto knows (listing them is slow: once per module)."""
    return str(client("ec2", REGION, endpoint).describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


@pytest.fixture
def cluster() -> str:
    return unique_cluster("sfnodes")


def settings_for(cluster: str, endpoint: str, tmp_path: Path, **more: Any) -> Settings:
    return load_settings({"target": "aws", "cluster": cluster, "region": REGION,
                          "aws_endpoint": endpoint, "state_dir": str(tmp_path / "state"),
                          **more}, {})


def launch(ec2: Any, image: str, cluster: str, role: str, n: int = 0,
           instance_type: str = "t3.small", kms_key: str | None = None) -> NodeRef:
    """An instance tagged as terraform/aws tags its nodes, its root volume encrypted with
    ``kms_key`` if given; its ref as Terraform's outputs say."""
    place = {"Slot": str(n)} if role == "manager" else {"Index": str(n)}
    tags = {"Cluster": cluster, "Role": role, "Name": f"{cluster}-{role}-{n}", **place}
    root = ([{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 20, "Encrypted": True,
                                                    "KmsKeyId": kms_key}}]
            if kms_key else [])
    made = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type,
                             BlockDeviceMappings=root,
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                 {"Key": k, "Value": v} for k, v in tags.items()]}])
    instance = described(ec2, made["Instances"][0]["InstanceId"])
    return NodeRef(tags["Name"], instance["PrivateIpAddress"], instance["PublicIpAddress"],
                   instance["InstanceId"])


def described(ec2: Any, instance_id: str) -> dict[str, Any]:
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    found: dict[str, Any] = reservations[0]["Instances"][0]
    return found


def calls_to(ec2: Any, operation: str) -> list[str]:
    """Every ``operation`` request this client sends from now on (botocore's own event hook)."""
    seen: list[str] = []
    ec2.meta.events.register(f"before-call.ec2.{operation}", lambda **_: seen.append(operation))
    return seen


# --- point 2: drift -----------------------------------------------------------------------


def test_each_node_is_read_with_its_drift_in_one_call(ec2: Any, image: str, cluster: str,
                                                      endpoint: str, tmp_path: Path) -> None:
    manager = launch(ec2, image, cluster, "manager")
    worker = launch(ec2, image, cluster, "worker")
    launch(ec2, image, f"other-{cluster}", "worker")  # another cluster's node of the same index
    settings = settings_for(cluster, endpoint, tmp_path, worker_instance_type="t3.medium")
    describes = calls_to(ec2, "DescribeInstances")

    facts = node_facts(ec2, settings, [manager, worker])

    assert describes == ["DescribeInstances"]
    assert facts == {
        manager.name: NodeFacts(image=image, state="running", private_ip=manager.private_ip,
                                ssh_host=manager.ssh_host),
        worker.name: NodeFacts(image=image, state="running", private_ip=worker.private_ip,
                               ssh_host=worker.ssh_host,
                               drift=("instance type t3.small, settings want t3.medium",)),
    }


def test_a_root_volume_of_another_key_is_drift(ec2: Any, image: str, cluster: str,
                                               endpoint: str, tmp_path: Path) -> None:
    old, new = (f"arn:aws:kms:{REGION}:123456789012:key/{n}1111111-2222-3333-4444-555555555555"
                for n in (1, 2))
    same, other = (launch(ec2, image, cluster, "worker", n, kms_key=key)
                   for n, key in ((0, new), (1, old)))
    describes, volumes = calls_to(ec2, "DescribeInstances"), calls_to(ec2, "DescribeVolumes")

    facts = node_facts(ec2, settings_for(cluster, endpoint, tmp_path, root_volume_kms_key_id=new),
                       [same, other])

    assert (describes, volumes) == (["DescribeInstances"], ["DescribeVolumes"])
    assert facts[same.name].drift == ()
    assert facts[other.name].drift == (f"root volume key {old}, settings want {new}",)
    # No key in the settings: the account's default, nothing to compare, no second call.
    node_facts(ec2, settings_for(cluster, endpoint, tmp_path), [same, other])
    assert volumes == ["DescribeVolumes"]


def test_the_target_reads_the_same_facts(ec2: Any, image: str, cluster: str, endpoint: str,
                                         tmp_path: Path) -> None:
    manager = launch(ec2, image, cluster, "manager", instance_type="t3.medium")
    target = AwsTarget(settings_for(cluster, endpoint, tmp_path))  # instance_type: t3.small

    assert target.node_facts([manager])[manager.name].drift == (
        "instance type t3.medium, settings want t3.small",)
    assert target.node_facts([]) == {}


def test_a_worker_public_against_the_settings_is_drift_and_reached_privately(
        ec2: Any, image: str, cluster: str, endpoint: str, tmp_path: Path) -> None:
    worker = launch(ec2, image, cluster, "worker")  # moto gives it a public address
    settings = settings_for(cluster, endpoint, tmp_path, worker_public_ip=False)

    fact = node_facts(ec2, settings, [worker])[worker.name]

    assert fact.ssh_host == worker.private_ip  # through a manager, as terraform/aws's output says
    assert fact.drift == (f"public address {worker.ssh_host}, settings want none "
                          "(worker_public_ip: false)",)


def test_roll_replaces_the_drifted_nodes_and_says_why(ec2: Any, image: str, cluster: str,
                                                     endpoint: str, tmp_path: Path) -> None:
    managers = [launch(ec2, image, cluster, "manager", n) for n in range(3)]
    workers = [launch(ec2, image, cluster, "worker", n, "t3.medium" if n else "t3.small")
               for n in range(2)]
    settings = settings_for(cluster, endpoint, tmp_path, instance_type="t3.medium",
                            manager_instance_type="t3.small")
    refs = [*workers, *managers]
    facts = node_facts(ec2, settings, refs)

    # On the image new nodes boot from: only the worker of the old type is replaced.
    assert out_of_date(refs, facts, image) == {
        workers[0].name: ["instance type t3.small, settings want t3.medium"]}
    # A new image: every node, the drifted one for both reasons.
    assert out_of_date(refs, facts, "ami-0new0000000000000") == {
        ref.name: [f"image {image}, new nodes boot from ami-0new0000000000000",
                   *(["instance type t3.small, settings want t3.medium"] if ref == workers[0]
                     else [])]
        for ref in refs}
    # --all: every node, each with its own reasons (none but the drifted worker's).
    assert out_of_date(refs, facts, image, everything=True) == {
        ref.name: ["instance type t3.small, settings want t3.medium"] if ref == workers[0] else []
        for ref in refs}
    # Wherever the nodes are read (apply, status, roll), the drift is said.
    said: list[str] = []
    assert refreshed(refs, facts, said.append) == refs
    assert said == [f"{workers[0].name}: instance type t3.small, settings want t3.medium: "
                    "`invoke roll` replaces it"]


def test_the_roll_plan_says_why_each_node_is_replaced() -> None:
    worker, manager = "aws_instance.swarm_worker[0]", "aws_instance.swarm_manager[1]"
    record = RollRecord(summary="roll 2 node(s)", resume="invoke roll", max_unavailable=1,
                        pending=[worker, manager])
    why = {worker: ["instance type t3.small, settings want t3.medium"],
           manager: ["image ami-0old, new nodes boot from ami-0new", "instance type t3.small, "
                     "settings want t3.medium"]}

    assert _plan(record, why) == [
        "1. replace worker(s) swarm_worker[0]",
        "   swarm_worker[0]: instance type t3.small, settings want t3.medium",
        "2. replace manager swarm_manager[1] (the leader goes last)",
        "   swarm_manager[1]: image ami-0old, new nodes boot from ami-0new; instance type "
        "t3.small, settings want t3.medium"]
    # Resumed from the journal, the reasons are not known: only the steps.
    assert _plan(record, {}) == ["1. replace worker(s) swarm_worker[0]",
                                 "2. replace manager swarm_manager[1] (the leader goes last)"]


def test_status_shows_drift_and_stopped_machines_in_the_table() -> None:
    nodes = parse_nodes((DATA / "node-query-3m2w.json").read_text())
    drifted, stopped = nodes[3].address, nodes[4].address
    table = node_table(nodes, {drifted: "instance type t3.small, settings want t3.medium: "
                                        "`invoke roll` replaces it",
                               stopped: "machine stopped"}).splitlines()

    assert table[0].split()[-1] == "NOTE"
    assert table[4].endswith("instance type t3.small, settings want t3.medium: "
                             "`invoke roll` replaces it")
    assert table[5].endswith("machine stopped")
    assert "NOTE" not in node_table(nodes)


# --- past 200 nodes: EC2's filter limit ------------------------------------------------------

FILTER_VALUE = re.compile(r"Filter\.\d+\.Value\.\d+")


def ec2_filter_limit(ec2: Any) -> list[int]:
    """EC2's limit of 200 filter values a call, which moto does not enforce: a call with
    more is answered as EC2 answers it (botocore's ``before-send`` event stands in for the
    HTTP exchange), the others go on to moto. Returns the filter values of each call."""
    counted: list[int] = []
    refuse = ec2_error("FilterLimitExceeded",
                       "The maximum number of filter values specified on a single call is 200")

    def before_send(request: AWSPreparedRequest, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        counted.append(len([key for key in parse_qs(body) if FILTER_VALUE.fullmatch(key)]))
        return refuse(request) if counted[-1] > 200 else None

    ec2.meta.events.register("before-send.ec2", before_send)
    return counted


def launch_many(ec2: Any, image: str, cluster: str, n: int, kms_key: str) -> list[NodeRef]:
    """``n`` workers tagged as terraform/aws tags them, in one RunInstances."""
    made = ec2.run_instances(
        ImageId=image, MinCount=n, MaxCount=n, InstanceType="t3.small",
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1",
                              "Ebs": {"VolumeSize": 20, "Encrypted": True, "KmsKeyId": kms_key}}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Cluster", "Value": cluster}, {"Key": "Role", "Value": "worker"}]}])
    refs = []
    for index, instance in enumerate(made["Instances"]):
        name = f"{cluster}-worker-{index}"
        ec2.create_tags(Resources=[instance["InstanceId"]], Tags=[
            {"Key": "Name", "Value": name}, {"Key": "Index", "Value": str(index)}])
        refs.append(NodeRef(name, instance["PrivateIpAddress"], instance["PublicIpAddress"],
                            instance["InstanceId"]))
    return refs


def test_a_cluster_of_more_than_200_nodes_is_read_within_ec2_s_filter_limit(
        ec2: Any, image: str, cluster: str, endpoint: str, tmp_path: Path) -> None:
    key = f"arn:aws:kms:{REGION}:123456789012:key/31111111-2222-3333-4444-555555555555"
    refs = launch_many(ec2, image, cluster, 250, key)
    launch(ec2, image, f"other-{cluster}", "worker")  # another cluster's: not read as a node
    settings = settings_for(cluster, endpoint, tmp_path, root_volume_kms_key_id=key)
    counted = ec2_filter_limit(ec2)
    describes, volumes = calls_to(ec2, "DescribeInstances"), calls_to(ec2, "DescribeVolumes")

    facts = node_facts(ec2, settings, refs)

    assert set(facts) == {ref.name for ref in refs}
    assert all(facts[ref.name].ssh_host == ref.ssh_host and facts[ref.name].drift == ()
               for ref in refs)  # each node's own instance and root volume, of the key wanted
    assert max(counted) <= 200
    assert len(describes) == 1 and len(volumes) == 2  # by the cluster's tag; 200 + 50 volumes


def test_ec2_s_filter_limit_is_enforced_here(ec2: Any) -> None:
    """The stand-in for EC2's limit refuses what EC2 refuses (so the test above can fail)."""
    counted = ec2_filter_limit(ec2)
    names = [f"n-{i}" for i in range(201)]

    with pytest.raises(ClientError, match="FilterLimitExceeded"):
        ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": names}])
    ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": names[:200]}])
    assert counted == [201, 200]


# --- point 3: addresses after a stop/start ---------------------------------------------------


def test_a_stop_and_start_moves_the_address_and_it_is_said(ec2: Any, image: str, cluster: str,
                                                         endpoint: str, tmp_path: Path) -> None:
    manager = launch(ec2, image, cluster, "manager")
    ec2.stop_instances(InstanceIds=[manager.id])
    ec2.start_instances(InstanceIds=[manager.id])
    now = described(ec2, manager.id)["PublicIpAddress"]
    assert now != manager.ssh_host  # moto, as EC2, hands out a new public address
    said: list[str] = []

    facts = node_facts(ec2, settings_for(cluster, endpoint, tmp_path), [manager])
    [live] = refreshed([manager], facts, said.append)

    assert live == NodeRef(manager.name, manager.private_ip, now, manager.id)
    assert said == [f"{manager.name}: address changed {manager.ssh_host} -> {now} "
                    "(stopped and started?)"]


def test_a_stopped_node_is_said_to_be_stopped_and_not_reached(
        ec2: Any, image: str, cluster: str, endpoint: str, tmp_path: Path) -> None:
    manager, worker = launch(ec2, image, cluster, "manager"), launch(ec2, image, cluster, "worker")
    ec2.stop_instances(InstanceIds=[worker.id])
    said: list[str] = []

    facts = node_facts(ec2, settings_for(cluster, endpoint, tmp_path), [manager, worker])
    live = refreshed([manager, worker], facts, said.append)

    assert live == [manager, worker]  # in place, for Terraform's addresses; not reached
    assert (facts[worker.name].state, facts[worker.name].reachable) == ("stopped", False)
    assert facts[manager.name].reachable
    assert said == [f"{worker.name}: stopped, so it is not reached over SSH; start it, or "
                    f"replace it (`invoke replace-node {worker.name}`)"]


def test_an_old_address_in_the_outputs_is_corrected(ec2: Any, image: str, cluster: str,
                                                   endpoint: str, tmp_path: Path) -> None:
    worker = launch(ec2, image, cluster, "worker")
    stale = NodeRef(worker.name, "10.9.9.9", "198.51.100.7", worker.id)  # outputs of long ago
    said: list[str] = []

    [live] = refreshed([stale], node_facts(ec2, settings_for(cluster, endpoint, tmp_path), [stale]),
                       said.append)

    assert live == worker
    assert said == [f"{worker.name}: address changed 198.51.100.7 -> {worker.ssh_host} "
                    "(stopped and started?)",
                    f"{worker.name}: private address changed 10.9.9.9 -> {worker.private_ip} "
                    "(stopped and started?)"]


def test_a_node_ec2_does_not_know_keeps_its_outputs(ec2: Any, cluster: str, endpoint: str,
                                                   tmp_path: Path) -> None:
    gone = NodeRef(f"{cluster}-worker-0", "10.0.0.9", "198.51.100.9", "i-0123456789abcdef0")
    said: list[str] = []
    facts = node_facts(ec2, settings_for(cluster, endpoint, tmp_path), [gone])

    assert facts == {}
    assert refreshed([gone], facts, said.append) == [gone] and said == []


def test_the_local_target_reports_no_drift_and_keeps_the_addresses(tmp_path: Path) -> None:
    settings = load_settings({"target": "local", "cluster": unique_cluster("sfnodes"),
                              "state_dir": str(tmp_path / "state")}, {})
    ref = NodeRef(f"{settings.cluster}-manager-0", "10.0.0.2", "10.0.0.2")
    target = LocalTarget(settings, sandbox_root=tmp_path / "sandbox")

    facts = target.node_facts([ref])  # no sandbox yet: nothing to tell
    assert facts == {}
    assert refreshed([ref], facts, print) == [ref]
