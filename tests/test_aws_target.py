"""The aws target against moto's server (real HTTP, real boto3), real OpenSSH and real Terraform.

The hashicorp/aws provider cannot be installed on this machine (no internet),
so `invoke apply --target aws` is followed as far as it goes: every check, the
rendered workspace and `terraform init -backend-config` against moto's S3, then
the one-line message about the provider. Terraform itself validates the
variables we render, on terraform/aws/variables.tf alone (which needs no provider).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from swarmforge.backend import S3Backend, render_backend_settings
from swarmforge.cluster import NodeRef
from swarmforge.errors import ConfigError, SwarmforgeError
from swarmforge.settings import load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.state_bucket import ensure_state_bucket
from swarmforge.targets.aws.target import NO_AMI, AwsTarget, account_variables
from swarmforge.terraform import Terraform, TerraformError
from swarmforge.tools import PROVIDER_MIRROR, cli_config, find_terraform
from tests.bastion_stand_in import bastion_stand_in
from tests.conftest import invoke, unique_cluster

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
AMI = "ami-0123456789abcdef0"
SWARM_VARIABLES = {"swarm_init": "false", "swarm_managers": "3", "swarm_workers": "2"}


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


@pytest.fixture
def s3(endpoint: str) -> Any:
    return client("s3", REGION, endpoint)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"swarmforge-aws-{uuid.uuid4().hex[:12]}"
    ensure_state_bucket(s3, name, REGION)
    # moto speaks plain HTTP, which the bucket's TLS-only policy refuses (see test_state_bucket.py).
    s3.delete_bucket_policy(Bucket=name)
    return name


@pytest.fixture
def key_name(ec2: Any, key: Path) -> str:
    name = f"swarmforge-{uuid.uuid4().hex[:8]}"
    ec2.import_key_pair(KeyName=name, PublicKeyMaterial=Path(f"{key}.pub").read_bytes())
    return name


@pytest.fixture
def config(endpoint: str, tmp_path: Path, bucket: str, key: Path, key_name: str) -> dict[str, Any]:
    """A valid aws configuration (the `swarmforge:` section of invoke.yaml), pointed at moto."""
    return {"target": "aws", "cluster": unique_cluster("sfaws"), "region": REGION,
            "state_dir": str(tmp_path / "state"), "state_bucket": bucket, "state_region": REGION,
            "state_endpoint": endpoint, "aws_endpoint": endpoint, "key_name": key_name,
            "ssh_key": str(key), "allowed_ssh_cidrs": ["203.0.113.7/32"], "ami_id": AMI}


@pytest.fixture
def target(config: dict[str, Any]) -> Iterator[AwsTarget]:
    made = AwsTarget(load_settings(config, {}))
    yield made
    made.teardown()


def run_task(config: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """``invoke -f <config> ARGS``: the real CLI with ``config`` as its configuration file."""
    state_dir = Path(config["state_dir"])
    path = state_dir.parent / f"invoke-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"swarmforge": config}))
    return invoke("-f", str(path), *args, state_dir=state_dir, timeout=180)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The error, which must be the one line on stderr that is not progress ("==> step")."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith(("==> ", "    "))]
    assert len(lines) == 1, result.stderr
    return lines[0]


def ssh_effective(config: Path, host: str) -> dict[str, str]:
    """What OpenSSH itself makes of ``config`` for ``host`` (``ssh -G``)."""
    shown = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True,
                           check=True)
    pairs = (line.split(" ", 1) for line in shown.stdout.splitlines() if " " in line)
    effective: dict[str, str] = {}
    for name, value in pairs:
        effective.setdefault(name, value)
    return effective


def proxy_jump(config: Path, host: str) -> str | None:
    jump = ssh_effective(config, host).get("proxyjump", "none").strip("[]")
    return None if jump == "none" else jump


@pytest.fixture(scope="module")
def images(endpoint: str) -> list[str]:
    """A few of the AMIs moto knows (listing them is slow: once per module)."""
    listed = client("ec2", REGION, endpoint).describe_images(Owners=["amazon"])["Images"]
    return [image["ImageId"] for image in listed[:3]]


def launch(ec2: Any, image_id: str, cluster: str, role: str = "manager", slot: int = 0) -> dict[str, Any]:
    """An instance tagged as terraform/aws tags its nodes."""
    tags = {"Cluster": cluster, "Role": role, "Slot": str(slot), "Name": f"{cluster}-{role}-{slot}"}
    answer = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, TagSpecifications=[
        {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    instance: dict[str, Any] = answer["Instances"][0]
    return instance


def variables_only(tmp_path: Path) -> Terraform:
    """Terraform on terraform/aws/variables.tf alone: it runs every validation, needs no provider."""
    binary, _ = find_terraform(None, SpecifierSet(">=1.10"), "terraform/aws")
    workdir = tmp_path / "variables-only"
    workdir.mkdir()
    shutil.copy(REPO / "terraform/aws/variables.tf", workdir)
    return Terraform(binary, workdir)


# --- bad input: one line, an exit code, nothing created ---------------------------------


@pytest.mark.parametrize(("change", "complaint"), [
    ({"state_bucket": None}, "state_bucket: the aws target keeps Terraform state in S3"),
    ({"ssh_key": None}, "ssh_key: the aws target needs the private half of the EC2 key pair"),
    ({"ssh_key": "/nonexistent/id_ed25519"}, "ssh_key: /nonexistent/id_ed25519 is not a readable file"),
    ({"key_name": None}, "key_name: name the EC2 key pair"),
    ({"allowed_ssh_cidrs": []}, "allowed_ssh_cidrs: list the networks you run swarmforge from"),
    ({"region": "moon"}, "region: 'moon' is not an AWS region name"),
    ({"region": "xx-fake-9"}, "region: xx-fake-9 is not an AWS region (EC2 does not list it)"),
    ({"region": "ap-east-1"}, "region: ap-east-1 is not enabled for account 123456789012"),
    ({"state_bucket": "swarmforge-nobody-made-this"},
     "state_bucket: 'swarmforge-nobody-made-this' does not exist: create it with "
     "`invoke state-bootstrap --bucket swarmforge-nobody-made-this --region eu-west-1`"),
    ({"key_name": "nobody-imported-this"}, "key_name: no EC2 key pair 'nobody-imported-this' in eu-west-1"),
])
def test_bad_input_stops_apply_with_one_line_and_creates_nothing(
        config: dict[str, Any], change: dict[str, Any], complaint: str, ec2: Any, s3: Any,
        bucket: str) -> None:
    cluster = config["cluster"]

    refused = run_task({**config, **change}, "apply")

    assert refused.returncode == 2
    assert complaint in one_line_error(refused)
    assert not (Path(config["state_dir"]) / cluster / "terraform").exists()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"swarmforge/{cluster}/")
    assert listed["KeyCount"] == 0
    tagged = ec2.describe_instances(Filters=[{"Name": "tag:Cluster", "Values": [cluster]}])
    assert tagged["Reservations"] == []


def test_a_key_others_can_read_is_refused(config: dict[str, Any], key: Path) -> None:
    key.chmod(0o644)

    refused = run_task(config, "apply")

    assert refused.returncode == 2
    assert f"ssh_key: {key} can be read by others" in one_line_error(refused)


@pytest.mark.parametrize("task", [["status"], ["destroy", "--yes"]])
def test_status_and_destroy_check_the_same_settings(config: dict[str, Any], task: list[str]) -> None:
    refused = run_task({**config, "state_bucket": None}, *task)

    assert refused.returncode == 2
    assert "state_bucket: the aws target keeps Terraform state in S3" in one_line_error(refused)


def test_destroying_a_cluster_that_never_was_changes_nothing(config: dict[str, Any]) -> None:
    result = run_task(config, "destroy", "--yes")

    assert result.returncode == 0, result.stderr
    assert f"cluster {config['cluster']!r}: nothing to destroy" in result.stdout
    assert not (Path(config["state_dir"]) / config["cluster"]).exists()


@pytest.mark.parametrize("command", [["status"], ["replace-node", "worker-0", "--yes"],
                                     ["roll", "--all", "--yes"], ["unlock", "--force", "--yes"]])
def test_a_command_on_a_cluster_that_never_was_says_so_and_makes_nothing(
        config: dict[str, Any], bucket: str, endpoint: str, command: list[str]) -> None:
    s3 = client("s3", REGION, endpoint)

    def listed() -> list[str]:
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    before = listed()

    result = run_task(config, *command)

    assert result.returncode == 2, result.stderr
    assert one_line_error(result) == (
        f"swarmforge: no cluster {config['cluster']!r} in {config['state_dir']} or "
        f"s3://{bucket}/swarmforge/; clusters here: none (only `invoke apply` makes one)")
    assert not Path(config["state_dir"]).exists()
    assert listed() == before  # no lease taken, no journal written


# --- apply as far as this machine lets it go ------------------------------------------


def test_apply_inits_the_s3_backend_on_moto_then_says_the_provider_is_missing(
        config: dict[str, Any], bucket: str, endpoint: str, images: list[str]) -> None:
    if _registry_reachable():
        pytest.skip("this machine reaches registry.terraform.io: init would install the provider")
    config = {**config, "ami_id": images[0]}  # an AMI EC2 has: apply reads its root snapshot first
    cluster_dir = Path(config["state_dir"]) / config["cluster"]
    workdir = cluster_dir / "terraform"

    result = run_task(config, "apply")
    AwsTarget(load_settings(config, {})).teardown()  # the SSH control dir it left

    assert result.returncode == 1
    # Before Terraform needs the provider, the plan was said as an operator reads it.
    plan = result.stderr.split("==> preparing cluster", 1)[0]
    assert f"apply of cluster '{config['cluster']}' on the aws target:" in plan
    assert "managers: 3 (3 to create)" in plan and "workers:  2 (2 to create)" in plan
    assert f"phase 1:  every node is created; {config['cluster']}-manager-0 runs `docker swarm init`" \
        in plan
    assert f"image:    {images[0]} (from --ami)" in plan
    assert f"state:    s3://{bucket}/swarmforge/{config['cluster']}/terraform.tfstate ({REGION})" \
        in plan
    # terraform/aws needs hashicorp/aws and hashicorp/null; init names whichever failed first.
    assert re.fullmatch(
        r"swarmforge: terraform init cannot install provider hashicorp/(aws|null): could not "
        r"connect to registry\.terraform\.io; full log: " + re.escape(str(cluster_dir / "terraform.log")),
        one_line_error(result))
    # terraform/aws keeps its partial `backend "s3" {}`, filled by -backend-config.
    assert not (workdir / "backend.tf").exists()
    assert 'backend "s3" {}' in (workdir / "versions.tf").read_text()
    rendered = (workdir / "backend.tfbackend").read_text()
    assert f'bucket  = "{bucket}"' in rendered
    assert f'key     = "swarmforge/{config["cluster"]}/terraform.tfstate"' in rendered
    assert f's3 = "{endpoint}"' in rendered
    # Terraform lists the bucket's workspaces before it records the backend: it reached moto.
    backend = json.loads((workdir / ".terraform" / "terraform.tfstate").read_text())["backend"]
    assert backend["type"] == "s3"
    assert (backend["config"]["bucket"], backend["config"]["key"]) == (
        bucket, f"swarmforge/{config['cluster']}/terraform.tfstate")
    assert 'Successfully configured the backend "s3"!' in (cluster_dir / "terraform.log").read_text()


def test_backend_settings_carry_the_state_to_the_clusters_key(
        config: dict[str, Any], endpoint: str, bucket: str, tmp_path: Path) -> None:
    if not PROVIDER_MIRROR.exists():
        pytest.skip(f"no provider mirror at {PROVIDER_MIRROR} (run scripts/setup-host.sh)")
    settings = load_settings(config, {})
    target = AwsTarget(settings)
    binary, version = find_terraform(None, SpecifierSet(">=1.10"), "a partial S3 backend")
    workdir = tmp_path / "partial"
    workdir.mkdir()
    (workdir / "main.tf").write_text(
        'terraform {\n  backend "s3" {}\n}\n\nresource "null_resource" "node" {}\n')
    tf = Terraform(binary, workdir, env={"TF_CLI_CONFIG_FILE": str(cli_config(tmp_path / "rc"))})
    assert not target.exists()

    tf.init(render_backend_settings(S3Backend(bucket, settings.state_key, REGION, endpoint), version))
    tf.apply({}, {})

    assert not settings.cluster_dir.exists()
    assert target.exists()  # from the state in the bucket alone
    tf.apply({}, {}, destroy=True)
    assert not target.exists()  # a state without resources is nothing to destroy


# --- how we reach the nodes ---------------------------------------------------------------


def test_prepare_writes_an_ssh_config_that_checks_host_keys_strictly(target: AwsTarget,
                                                                       key: Path) -> None:
    """No trust on first use: known_hosts holds only keys pinned from each instance's
    console (tests/test_host_keys.py), and ssh refuses any other."""
    profile = target.prepare()

    assert not profile.accept_new_host_keys
    assert (profile.user, profile.identity) == ("ubuntu", key.resolve())
    assert profile.known_hosts == target.settings.cluster_dir / "ssh" / "known_hosts"
    shown = ssh_effective(profile.config, "203.0.113.20")
    assert shown["stricthostkeychecking"] == "true"  # ssh -G's word for "yes"
    assert shown["userknownhostsfile"] == str(profile.known_hosts)
    assert shown["identityfile"] == str(key.resolve())
    assert shown["user"] == "ubuntu"
    assert proxy_jump(profile.config, "10.0.1.5") is None  # public workers: no bastion


def test_private_workers_are_reached_through_the_first_running_manager(
        config: dict[str, Any], ec2: Any, images: list[str]) -> None:
    config = {**config, "worker_public_ip": False}
    cluster = config["cluster"]
    target = AwsTarget(load_settings(config, {}))
    try:
        profile = target.prepare()
        # Before phase 1 there is no manager to jump through, and no worker to reach.
        assert proxy_jump(profile.config, "10.0.1.5") is None
        assert "ssh_bastion_host" not in target.variables()

        launch(ec2, images[0], f"other-{cluster}")  # another cluster's manager
        gone = launch(ec2, images[0], cluster, slot=0)
        ec2.terminate_instances(InstanceIds=[gone["InstanceId"]])
        launch(ec2, images[0], cluster, slot=2)
        first = launch(ec2, images[0], cluster, slot=1)["PublicIpAddress"]
        variables = target.variables()

        assert (variables["worker_public_ip"], variables["ssh_bastion_host"]) == ("false", first)
        for private in ("10.0.1.5", "172.20.3.4", "192.168.7.8"):
            assert proxy_jump(profile.config, private) == first
        assert proxy_jump(profile.config, first) is None
        again = AwsTarget(load_settings(config, {})).prepare()  # a later run finds it at once
        assert proxy_jump(again.config, "10.0.1.5") == first
    finally:
        target.teardown()


def test_workers_made_private_before_the_setting_changed_are_still_reached(
        config: dict[str, Any], ec2: Any, images: list[str]) -> None:
    """worker_public_ip turned true: the workers made before keep no public address until
    `invoke roll` replaces them (drift), and the roll reaches them through a manager."""
    target = AwsTarget(load_settings({**config, "worker_public_ip": True}, {}))
    try:
        manager = launch(ec2, images[0], config["cluster"], slot=0)["PublicIpAddress"]
        profile = target.prepare()
        assert proxy_jump(profile.config, "10.0.1.5") == manager
        # Terraform's steps reach public workers only: no bastion for them.
        assert "ssh_bastion_host" not in target.variables()
    finally:
        target.teardown()


def test_teardown_forgets_host_keys_and_connections(target: AwsTarget) -> None:
    profile = target.prepare()
    profile.known_hosts.write_text("203.0.113.20 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\n")
    assert profile.control_dir.is_dir()

    target.teardown()

    assert not profile.known_hosts.exists()
    assert not profile.config.exists()
    assert not profile.control_dir.exists()


# --- what Terraform is given --------------------------------------------------------------


def test_terraform_accepts_the_variables(config: dict[str, Any], key: Path, tmp_path: Path) -> None:
    config = {**config, "allowed_ssh_cidrs": ["203.0.113.7/32", "198.51.100.0/24"]}
    target = AwsTarget(load_settings(config, {}))
    target.prepare()
    try:
        variables = target.variables()
    finally:
        target.teardown()

    assert variables == {
        "cluster_name": config["cluster"], "region": REGION, "swarm_ami_id": AMI,
        "swarm_instance_type": "t3.small", "key_name": config["key_name"],
        "allowed_ssh_cidrs": '["203.0.113.7/32", "198.51.100.0/24"]', "ssh_user": "ubuntu",
        "ssh_private_key_path": str(key.resolve()), "worker_public_ip": "true",
        # The account's settings at their defaults; those that default to null are left out.
        "swarm_manager_instance_type": "t3.small", "swarm_worker_instance_type": "t3.small",
        "subnet_ids": "[]", "worker_subnet_ids": "[]", "create_nat_gateway": "false",
        "public_ports": "[]", "root_volume_size": "20", "tags": "{}",
        "ssh_timeout": "300s",
        # An unencrypted key; moto's default VPC is 172.31.0.0/16: Docker's own overlay pool fits.
        "ssh_use_agent": "false", "swarm_default_addr_pool": "",
    }
    assert target.ami_source == "--ami"
    assert variables_only(tmp_path).plan({**variables, **SWARM_VARIABLES}, {}).empty


# The README's "Settings for a real account" example, as invoke.yaml gives it.
REAL_ACCOUNT: dict[str, Any] = {
    "vpc_id": "vpc-0a1b2c3d4e5f60718",
    "subnet_ids": ["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712"],
    "worker_subnet_ids": ["subnet-0a1b2c3d4e5f60721", "subnet-0a1b2c3d4e5f60722"],
    "worker_public_ip": False,
    "create_nat_gateway": True,
    "public_ports": ["80/tcp", "443/tcp", {"port": 8443, "cidrs": ["198.51.100.0/24"]}],
    "public_cidrs": ["0.0.0.0/0"],
    "iam_instance_profile": "swarm-nodes",
    "instance_type": "t3.small",
    "worker_instance_type": "m6i.large",
    "root_volume_size": 50,
    "root_volume_kms_key_id": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "tags": {"team": "platform", "cost-center": "4711"},
}


def test_a_real_accounts_settings_reach_terraform(config: dict[str, Any], tmp_path: Path,
                                                 ec2: Any) -> None:
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]  # a VPC of its own, in 10.x
    target = AwsTarget(load_settings({**config, **REAL_ACCOUNT, "vpc_id": vpc}, {}))
    target.prepare()
    try:
        variables = target.variables()
    finally:
        target.teardown()

    expected = {
        "vpc_id": vpc,
        # Docker's 10.0.0.0/8 would shadow the VPC: the overlays take the next /16.
        "swarm_default_addr_pool": "10.1.0.0/16",
        "subnet_ids": '["subnet-0a1b2c3d4e5f60711", "subnet-0a1b2c3d4e5f60712"]',
        "worker_subnet_ids": '["subnet-0a1b2c3d4e5f60721", "subnet-0a1b2c3d4e5f60722"]',
        "worker_public_ip": "false", "create_nat_gateway": "true",
        "public_ports": json.dumps([
            {"port": 80, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]},
            {"port": 443, "protocol": "tcp", "cidr_blocks": ["0.0.0.0/0"]},
            {"port": 8443, "protocol": "tcp", "cidr_blocks": ["198.51.100.0/24"]}]),
        "iam_instance_profile": "swarm-nodes",
        "swarm_instance_type": "t3.small", "swarm_manager_instance_type": "t3.small",
        "swarm_worker_instance_type": "m6i.large",
        "root_volume_size": "50",
        "root_volume_kms_key_id": REAL_ACCOUNT["root_volume_kms_key_id"],
        "tags": '{"team": "platform", "cost-center": "4711"}',
    }
    assert {name: variables.get(name) for name in expected} == expected
    assert "private_route_table_id" not in variables  # null in Terraform: a route table is made
    # Terraform takes them, validations and all (phase 1: no workers yet, so no bastion).
    phase_one = {**variables, **SWARM_VARIABLES, "swarm_managers": "1", "swarm_workers": "0"}
    assert variables_only(tmp_path).plan(phase_one, {}).empty


def test_the_real_account_settings_come_from_the_environment_too(
        config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The text forms of INVOKE_SWARMFORGE_*: lists and tags comma-separated, true/false."""
    from invoke import Config

    from swarmforge.settings import config_defaults

    environment = {
        "VPC_ID": "vpc-0a1b2c3d4e5f60718",
        "SUBNET_IDS": "subnet-0a1b2c3d4e5f60711,subnet-0a1b2c3d4e5f60712",
        "WORKER_SUBNET_IDS": "subnet-0a1b2c3d4e5f60721",
        "WORKER_PUBLIC_IP": "false", "CREATE_NAT_GATEWAY": "true",
        "PRIVATE_ROUTE_TABLE_ID": "rtb-0a1b2c3d4e5f60719",
        "PUBLIC_PORTS": "80/tcp,443,53/udp", "PUBLIC_CIDRS": "198.51.100.0/24,203.0.113.0/24",
        "MANAGER_INSTANCE_TYPE": "c6i.large", "ROOT_VOLUME_SIZE": "40",
        "TAGS": "team=platform,env=prod",
    }
    for name, value in environment.items():
        monkeypatch.setenv(f"INVOKE_SWARMFORGE_{name}", value)
    invoke_config = Config(defaults={"swarmforge": config_defaults()})
    invoke_config.load_shell_env()

    variables = account_variables(load_settings({**invoke_config["swarmforge"], **config}, {}))

    cidrs = ["198.51.100.0/24", "203.0.113.0/24"]
    assert json.loads(variables["public_ports"]) == [
        {"port": 80, "protocol": "tcp", "cidr_blocks": cidrs},
        {"port": 443, "protocol": "tcp", "cidr_blocks": cidrs},
        {"port": 53, "protocol": "udp", "cidr_blocks": cidrs}]
    assert (variables["create_nat_gateway"], variables["private_route_table_id"]) == (
        "true", "rtb-0a1b2c3d4e5f60719")
    assert (variables["swarm_manager_instance_type"], variables["swarm_worker_instance_type"]) == (
        "c6i.large", "t3.small")
    assert variables["root_volume_size"] == "40"
    assert json.loads(variables["tags"]) == {"team": "platform", "env": "prod"}
    assert json.loads(variables["worker_subnet_ids"]) == ["subnet-0a1b2c3d4e5f60721"]


def test_private_workers_need_a_manager_to_exist_first(config: dict[str, Any], ec2: Any,
                                                       images: list[str], tmp_path: Path) -> None:
    """... to join, and none to be destroyed: terraform/aws's variables and its swarm step's
    bastion precondition on stand-in nodes (tests/bastion_stand_in.py), fed what the target
    finds on moto."""
    target = AwsTarget(load_settings({**config, "worker_public_ip": False}, {}))
    target.prepare()
    terraform = bastion_stand_in(tmp_path / "stand-in")
    try:
        # Phase 1 makes every node, and runs manager 0's step alone: no bastion needed.
        terraform.apply({**target.variables(), **SWARM_VARIABLES, "swarm_init": "true"}, {})
        with pytest.raises(TerraformError, match="need ssh_bastion_host"):
            terraform.plan({**target.variables(), **SWARM_VARIABLES}, {})

        manager = launch(ec2, images[0], config["cluster"], slot=0)
        terraform.apply({**target.variables(), **SWARM_VARIABLES}, {})  # the workers join

        # The manager stops: no bastion any more, and destroy needs none.
        ec2.stop_instances(InstanceIds=[manager["InstanceId"]])
        variables = target.variables()
        assert "ssh_bastion_host" not in variables
        terraform.apply({**variables, **SWARM_VARIABLES}, {}, destroy=True)
        assert terraform.addresses() == []
    finally:
        target.teardown()


def test_a_destroy_asks_nothing_of_what_may_be_gone(config: dict[str, Any], ec2: Any,
                                                   tmp_path: Path) -> None:
    """No AMI on record (pruned, or never baked here) and the key pair deleted: apply is
    refused on both, and destroy's variables still pass every terraform/aws validation."""
    config = {**config, "ami_id": None}
    ec2.delete_key_pair(KeyName=config["key_name"])
    target = AwsTarget(load_settings(config, {}))
    try:
        with pytest.raises(ConfigError, match="no EC2 key pair"):
            target.prepare()
        target.prepare(destroying=True)
        with pytest.raises(SwarmforgeError, match="AMI"):
            target.variables()
        variables = target.variables(destroying=True)
    finally:
        target.teardown()

    assert variables["swarm_ami_id"] == NO_AMI
    assert variables_only(tmp_path).plan({**variables, **SWARM_VARIABLES}, {}).empty


def test_node_images_are_read_from_ec2(target: AwsTarget, ec2: Any, images: list[str]) -> None:
    cluster = target.settings.cluster
    manager, worker = launch(ec2, images[0], cluster), launch(ec2, images[1], cluster, "worker")
    launch(ec2, images[2], f"other-{cluster}")
    refs = [NodeRef(f"{cluster}-manager-0", "10.0.0.1", "x"),
            NodeRef(f"{cluster}-worker-0", "10.0.0.2", "y")]

    facts = target.node_facts(refs)
    assert {name: fact.image for name, fact in facts.items()} == {
        f"{cluster}-manager-0": manager["ImageId"], f"{cluster}-worker-0": worker["ImageId"]}
    assert target.desired_image() == AMI


def _registry_reachable() -> bool:
    try:
        socket.create_connection(("registry.terraform.io", 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_the_aws_target_takes_its_providers_from_the_registry(tmp_path: Path) -> None:
    """An operator's machine has no offline mirror: nothing may be excluded from the registry
    (terraform/aws needs hashicorp/null as well as hashicorp/aws)."""
    rc = cli_config(tmp_path / "rc", AwsTarget.mirrored_providers).read_text()
    assert "filesystem_mirror" not in rc and "exclude" not in rc
    assert "direct {}" in rc
