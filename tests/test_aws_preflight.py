"""What the aws target checks before an apply makes anything (issue 16, point 9): the root
volume against the AMI, the vCPU quotas, an SSH key with a passphrase, and partitions.

Against moto's server (tests/conftest.py ``endpoint``). moto's Service Quotas knows
no ec2 quota: a test that needs one seeds it in moto's backend, which serves the
HTTP API from this process; without a seed, moto answers NoSuchResource as AWS
does for a quota it will not show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.core.exceptions import JsonRESTError
from moto.servicequotas.models import ServiceQuotasBackend

from swarmforge.settings import load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.canonical import canonical_owner
from swarmforge.targets.aws.preflight import capacity_problems, settings_problems
from swarmforge.targets.aws.provenance import newest_base_ami
from swarmforge.targets.aws.quotas import STANDARD, Need, quota_code, vcpus_needed
from swarmforge.targets.aws.ssh_keys import agent_holds, is_encrypted, public_key
from swarmforge.targets.aws.state_bucket import ensure_state_bucket
from swarmforge.targets.aws.target import AwsTarget
from tests.conftest import unique_cluster
from tests.test_aws_target import one_line_error, run_task
from tests.test_bake import Bake, var_file_values
from tests.test_rebuild import publish_ubuntu

REGION = "eu-west-1"
PASSPHRASE = "correct horse battery"


# --- the SSH key ---------------------------------------------------------------------------


def keygen(path: Path, *options: str, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", *options, "-N", passphrase, "-f", str(path)], check=True)
    return path


@pytest.mark.parametrize(("options", "passphrase", "encrypted"), [
    (["-t", "ed25519"], "", False),
    (["-t", "ed25519"], PASSPHRASE, True),  # OpenSSH format: kdfname bcrypt
    (["-t", "rsa", "-b", "2048", "-m", "PEM"], "", False),
    (["-t", "rsa", "-b", "2048", "-m", "PEM"], PASSPHRASE, True),  # Proc-Type: 4,ENCRYPTED
    (["-t", "rsa", "-b", "2048", "-m", "PKCS8"], PASSPHRASE, True),  # ENCRYPTED PRIVATE KEY
])
def test_a_passphrase_is_seen_in_every_key_format(tmp_path: Path, options: list[str],
                                                  passphrase: str, encrypted: bool) -> None:
    key = keygen(tmp_path / "key", *options, passphrase=passphrase)

    assert is_encrypted(key) is encrypted


def test_the_public_half_is_read_without_the_passphrase(tmp_path: Path) -> None:
    key = keygen(tmp_path / "key", "-t", "ed25519", passphrase=PASSPHRASE)
    from_pub = public_key(key)
    Path(f"{key}.pub").unlink()

    assert from_pub is not None
    assert public_key(key) == from_pub  # the OpenSSH format carries it unencrypted


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real ssh-agent of our own, at SSH_AUTH_SOCK; stopped by its pid afterwards."""
    socket = tmp_path / "agent.sock"
    started = subprocess.run(["ssh-agent", "-a", str(socket), "-s"], capture_output=True,
                             text=True, check=True)
    pid = int(started.stdout.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
    try:
        yield socket
    finally:
        os.kill(pid, signal.SIGTERM)


def ssh_add(key: Path, tmp_path: Path) -> None:
    """``ssh-add KEY``, the passphrase given as an operator types it (through SSH_ASKPASS)."""
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho '{PASSPHRASE}'\n")
    askpass.chmod(0o700)
    subprocess.run(["ssh-add", str(key)], env={**os.environ, "SSH_ASKPASS": str(askpass),
                                               "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"},
                   stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=30)


def test_the_agent_is_asked_whether_it_holds_the_key(tmp_path: Path, agent: Path) -> None:
    key = keygen(tmp_path / "key", "-t", "ed25519", passphrase=PASSPHRASE)
    other = keygen(tmp_path / "other", "-t", "ed25519", passphrase=PASSPHRASE)
    assert not agent_holds(key)  # an agent with no key

    ssh_add(other, tmp_path)
    assert not agent_holds(key)
    ssh_add(key, tmp_path)
    assert agent_holds(key)


# --- the settings and the key, through the real CLI ------------------------------------------


@pytest.fixture
def account(endpoint: str, tmp_path: Path) -> dict[str, Any]:
    """A valid aws configuration pointed at moto, with an unencrypted key and its key pair."""
    s3, ec2 = client("s3", REGION, endpoint), client("ec2", REGION, endpoint)
    bucket = f"swarmforge-pre-{uuid.uuid4().hex[:12]}"
    ensure_state_bucket(s3, bucket, REGION)
    s3.delete_bucket_policy(Bucket=bucket)  # moto speaks plain HTTP (see test_state_bucket.py)
    key = keygen(tmp_path / "id_ed25519", "-t", "ed25519")
    key_name = f"swarmforge-{uuid.uuid4().hex[:8]}"
    ec2.import_key_pair(KeyName=key_name, PublicKeyMaterial=Path(f"{key}.pub").read_bytes())
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]  # a 15 GiB root snapshot in moto
    return {"target": "aws", "cluster": unique_cluster("sfpre"), "region": REGION,
            "state_dir": str(tmp_path / "state"), "state_bucket": bucket, "state_region": REGION,
            "state_endpoint": endpoint, "aws_endpoint": endpoint, "key_name": key_name,
            "ssh_key": str(key), "allowed_ssh_cidrs": ["203.0.113.7/32"],
            "ami_id": image["ImageId"]}


def encrypt(key: Path) -> None:
    """Give the key a passphrase, as `ssh-keygen -p` does for an operator."""
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", PASSPHRASE, "-P", "", "-f", str(key)],
                   check=True, capture_output=True)


def test_a_key_with_a_passphrase_and_no_agent_stops_apply_in_one_line(
        account: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = Path(account["ssh_key"])
    encrypt(key)

    refused = run_task(account, "apply")

    assert refused.returncode == 2
    assert one_line_error(refused) == (
        f"swarmforge: ssh_key: {key} has a passphrase and no ssh-agent runs (SSH_AUTH_SOCK is not "
        f"set): run `ssh-add {key}` (in a shell with an agent), or use a key without a passphrase")
    assert not (Path(account["state_dir"]) / account["cluster"] / "terraform").exists()


def test_a_key_with_a_passphrase_goes_through_the_agent_that_holds_it(
        account: dict[str, Any], agent: Path, tmp_path: Path) -> None:
    key = Path(account["ssh_key"])
    encrypt(key)
    assert settings_problems(load_settings(account, {})) == [
        f"ssh_key: {key} has a passphrase and no ssh-agent holds it: run `ssh-add {key}` (in a "
        "shell with an agent), or use a key without a passphrase"]

    ssh_add(key, tmp_path)
    target = AwsTarget(load_settings(account, {}))
    target.prepare()
    try:
        variables = target.variables()
    finally:
        target.teardown()

    assert variables["ssh_use_agent"] == "true"  # terraform/aws: agent on, no key file


def test_a_pem_key_with_a_passphrase_and_no_public_half_says_how_to_make_it(
        account: dict[str, Any], agent: Path) -> None:
    key = Path(account["ssh_key"])
    keygen(key.with_name("pem"), "-t", "rsa", "-b", "2048", "-m", "PEM", passphrase=PASSPHRASE)
    pem = key.with_name("pem")
    Path(f"{pem}.pub").unlink()

    problems = settings_problems(load_settings({**account, "ssh_key": str(pem)}, {}))

    assert problems == [f"ssh_key: {pem} has a passphrase, and without its public half "
                        f"swarmforge cannot find it in the ssh-agent: ssh-keygen -y -f {pem} > "
                        f"{pem}.pub"]


def test_a_key_without_a_passphrase_never_uses_the_agent(account: dict[str, Any],
                                                         agent: Path, tmp_path: Path) -> None:
    ssh_add(Path(account["ssh_key"]), tmp_path)  # a stray agent holding the very key
    target = AwsTarget(load_settings(account, {}))
    target.prepare()
    try:
        assert target.variables()["ssh_use_agent"] == "false"
    finally:
        target.teardown()


# --- partitions: Canonical's account and ARNs ---------------------------------------------------


@pytest.mark.parametrize(("region", "owner"), [
    ("us-east-1", "099720109477"), ("eu-west-1", "099720109477"),
    ("us-gov-west-1", "513442679011"), ("us-gov-east-1", "513442679011"),
    ("cn-north-1", "837727238323"), ("cn-northwest-1", "837727238323"),
])
def test_canonicals_account_follows_the_partition(region: str, owner: str) -> None:
    assert canonical_owner(region) == owner


def test_the_base_ami_is_looked_for_under_the_partitions_canonical(endpoint: str) -> None:
    """In GovCloud, an Ubuntu AMI published by the commercial account id is not Canonical's."""
    region = "us-gov-west-1"
    publish_ubuntu(region, owner="099720109477")
    ours = publish_ubuntu(region, owner="513442679011")
    publish_ubuntu(region, owner="099720109477")  # newer, and of the wrong account

    assert newest_base_ami(client("ec2", region, endpoint)) == ours


@pytest.mark.parametrize(("region", "owner"), [
    ("us-east-1", "099720109477"), ("cn-north-1", "837727238323"), ("us-gov-west-1", "513442679011"),
])
def test_the_bake_starts_from_the_partitions_ubuntu(tmp_path: Path, endpoint: str, region: str,
                                                    owner: str) -> None:
    """`invoke bake --dry-run` with the real Packer 1.6.6: the owner reaches the template."""
    bake = Bake(tmp_path, endpoint)

    done = bake.run("--dry-run", env={"PATH": os.environ["PATH"], "INVOKE_SWARMFORGE_REGION": region})

    assert done.returncode == 0, done.stderr
    assert var_file_values(bake.dir / "bake.pkrvars.hcl")["ubuntu_owner"] == owner


@pytest.mark.parametrize(("region", "arn", "complaint"), [
    ("cn-north-1", "arn:aws-cn:kms:cn-north-1:123456789012:key/1234abcd-12ab", None),
    ("us-gov-west-1", "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab", None),
    ("eu-west-1", "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab", None),
    ("cn-north-1", "arn:aws:kms:cn-north-1:123456789012:key/1234abcd-12ab",
     "is an ARN of partition aws, but cn-north-1 is in aws-cn: arn:aws-cn:kms:..."),
    ("eu-west-1", "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab",
     "is an ARN of partition aws-us-gov, but eu-west-1 is in aws: arn:aws:kms:..."),
    ("eu-west-1", "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab",
     "is a key of us-east-1; EBS volumes in eu-west-1 need a key of eu-west-1"),
])
def test_a_kms_key_must_be_of_the_regions_partition_and_region(
        account: dict[str, Any], region: str, arn: str, complaint: str | None) -> None:
    settings = load_settings({**account, "region": region, "root_volume_kms_key_id": arn}, {})

    problems = [p for p in settings_problems(settings) if p.startswith("root_volume_kms_key_id")]

    assert problems == ([f"root_volume_kms_key_id: {arn} {complaint}"] if complaint else [])


# --- the root volume and the vCPU quotas ---------------------------------------------------------


@pytest.mark.parametrize(("instance_type", "code"), [
    ("t3.small", STANDARD), ("m6i.large", STANDARD), ("c7gn.xlarge", STANDARD),
    ("im4gn.large", STANDARD), ("z1d.large", STANDARD), ("h1.2xlarge", STANDARD),
    ("d3.xlarge", STANDARD), ("dl1.24xlarge", "L-6E869C2A"), ("g5.xlarge", "L-DB2E81BA"),
    ("vt1.3xlarge", "L-DB2E81BA"), ("inf2.xlarge", "L-1945791B"), ("p5.48xlarge", "L-417A185B"),
    ("trn1.2xlarge", "L-2C3B7624"), ("x2idn.16xlarge", "L-7295265B"),
    ("u-6tb1.metal", "L-43DA4232"), ("hpc7g.4xlarge", "L-F7808C92"), ("f1.2xlarge", "L-74FC7D96"),
    ("mac1.metal", None),
])
def test_each_instance_type_counts_against_its_familys_quota(instance_type: str,
                                                             code: str | None) -> None:
    assert quota_code(instance_type) == code


def test_the_busiest_moment_counts_every_node_a_surge_and_the_builder() -> None:
    vcpus = {"t3.small": 2, "m6i.large": 2, "m6i.2xlarge": 8, "g5.xlarge": 4}

    standard = Need(nodes={"t3.small": 3, "m6i.2xlarge": 4}, surge=("t3.small", "m6i.2xlarge"),
                    builder="t3.small")
    mixed = Need(nodes={"t3.small": 3, "g5.xlarge": 2}, surge=("t3.small", "g5.xlarge"),
                 builder="t3.small")

    # 3*2 + 4*8, the largest node once more, the builder.
    assert vcpus_needed(standard, vcpus) == {STANDARD: 6 + 32 + 8 + 2}
    assert vcpus_needed(mixed, vcpus) == {STANDARD: 6 + 2 + 2, "L-DB2E81BA": 8 + 4}


@pytest.fixture
def seeded_quotas(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """ec2 quotas moto's Service Quotas answers with: {code: vCPUs, or an error code}."""
    seeded: dict[str, Any] = {}
    unseeded = ServiceQuotasBackend.get_service_quota

    def get_service_quota(backend: ServiceQuotasBackend, service_code: str,
                          quota_code: str) -> dict[str, Any]:
        value = seeded.get(quota_code) if service_code == "ec2" else None
        if isinstance(value, str):
            raise JsonRESTError(value, "not for you")
        if value is None:
            return unseeded(backend, service_code, quota_code)
        return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": float(value)}

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)
    return seeded


def capacity(account: dict[str, Any], **changes: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) of the capacity check for the account's settings with ``changes``."""
    notes: list[str] = []
    settings = load_settings({**account, **changes}, {})
    return capacity_problems(settings, str(settings.ami_id), notes.append), notes


def test_a_root_volume_smaller_than_the_amis_snapshot_is_refused(account: dict[str, Any],
                                                                 endpoint: str) -> None:
    problems, _ = capacity(account, root_volume_size=10)

    assert problems == [f"root_volume_size: 10 GiB cannot hold {account['ami_id']}, whose root "
                        "snapshot is 15 GiB: set swarmforge.root_volume_size to 15 or more"]
    assert capacity(account, root_volume_size=15)[0] == []


def test_an_ami_that_does_not_exist_is_refused(account: dict[str, Any]) -> None:
    problems, _ = capacity(account, ami_id="ami-0123456789abcdef0")

    assert problems == [f"ami: ami-0123456789abcdef0 is not an AMI in {REGION} (deregistered, or "
                        "of another region)"]


def test_a_quota_that_cannot_be_read_is_a_note_not_a_refusal(account: dict[str, Any],
                                                             seeded_quotas: dict[str, Any]) -> None:
    problems, notes = capacity(account)
    seeded_quotas[STANDARD] = "AccessDeniedException"
    denied, denied_notes = capacity(account)

    assert problems == denied == []
    assert notes == [f"vCPU quota Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) "
                     f"instances ({STANDARD}) in {REGION} not checked: Service Quotas answered "
                     "NoSuchResourceException"]
    assert denied_notes == [notes[0].replace("NoSuchResourceException", "AccessDeniedException")]


def test_the_vcpu_quota_must_hold_the_cluster_at_its_busiest(
        account: dict[str, Any], seeded_quotas: dict[str, Any], endpoint: str) -> None:
    # 3 managers and 2 workers of t3.small (2 vCPUs each), one more, the t3.small builder: 14,
    # beside what other tests left running in this region of the shared moto server.
    ec2 = client("ec2", REGION, endpoint)
    elsewhere = vcpus_running(ec2)
    seeded_quotas[STANDARD] = 14 + elsewhere
    assert capacity(account) == ([], [])

    other = ec2.run_instances(ImageId=account["ami_id"], MinCount=1, MaxCount=1,
                              InstanceType="t3.medium")["Instances"][0]["InstanceId"]
    ours = ec2.run_instances(ImageId=account["ami_id"], MinCount=1, MaxCount=1,
                             InstanceType="t3.small", TagSpecifications=[{
                                 "ResourceType": "instance",
                                 "Tags": [{"Key": "Cluster", "Value": account["cluster"]}]}])
    try:
        problems, _ = capacity(account)
    finally:
        ec2.terminate_instances(InstanceIds=[other, ours["Instances"][0]["InstanceId"]])

    # The other instance's 2 vCPUs count; the cluster's own node is one of the 14 already.
    assert problems == [
        f"instance types: the vCPU quota Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) "
        f"instances ({STANDARD}) in {REGION} is {14 + elsewhere}; this cluster needs 14 at its "
        "busiest (5 x t3.small, one more node while one is replaced, the bake's t3.small "
        f"builder) and other instances use {elsewhere + 2}: ask for more in Service Quotas, or "
        "choose smaller instance types"]
    assert capacity(account) == ([], [])  # terminated: nothing else holds quota


def vcpus_running(ec2: Any) -> int:
    """The vCPUs of the instances running in the region, counted here from EC2's own answers."""
    running = [i for r in ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
        for i in r["Instances"]]
    types = {i["InstanceType"] for i in running}
    if not types:
        return 0
    vcpus = {t["InstanceType"]: t["VCpuInfo"]["DefaultVCpus"]
             for t in ec2.describe_instance_types(InstanceTypes=sorted(types))["InstanceTypes"]}
    return sum(vcpus[i["InstanceType"]] for i in running)


def test_apply_stops_on_the_quota_before_anything_is_created(
        account: dict[str, Any], seeded_quotas: dict[str, Any], endpoint: str) -> None:
    seeded_quotas[STANDARD] = 8

    refused = run_task({**account, "worker_instance_type": "m6i.large"}, "apply")

    assert refused.returncode == 2, refused.stderr
    assert "the vCPU quota Running On-Demand Standard" in one_line_error(refused)
    assert "this cluster needs 14 at its busiest (3 x t3.small, 2 x m6i.large" \
        in one_line_error(refused)
    assert not (Path(account["state_dir"]) / account["cluster"] / "terraform").exists()
    tagged = client("ec2", REGION, endpoint).describe_instances(
        Filters=[{"Name": "tag:Cluster", "Values": [account["cluster"]]}])
    assert tagged["Reservations"] == []


def test_an_unknown_instance_type_is_one_line(account: dict[str, Any]) -> None:
    problems, _ = capacity(account, worker_instance_type="t9.nonesuch")

    assert len(problems) == 1 and problems[0].startswith("instance_type: InvalidInstanceType")
