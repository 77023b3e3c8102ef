"""Settings: every bad input is refused up front, one clear line each, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Config

from swarmforge.errors import ConfigError
from swarmforge.settings import PublicPort, Settings, config_defaults, load_settings
from swarmforge.targets import target_for
from tests.conftest import invoke

VPC = "vpc-0123456789abcdef0"
SUBNET_A, SUBNET_B = "subnet-0123456789abcdef0", "subnet-0123456789abcdef1"
#: Private workers behind a NAT gateway: valid as it is, each row above breaks one thing.
NAT = {"vpc_id": VPC, "subnet_ids": SUBNET_A, "worker_subnet_ids": SUBNET_B,
       "worker_public_ip": False, "create_nat_gateway": True}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"managers": 0}, "managers: 0 leaves the swarm without a manager"),
        ({"managers": 4}, "managers: 4 is even; 4 managers survive only 1 failure"),
        ({"managers": 9}, "managers: 9 is more than 7"),
        ({"workers": -1}, "workers: -1 is negative"),
        ({"ami_id": "ami-12345"}, "ami_id: 'ami-12345' is not an AMI id"),
        ({"ami_id": "AMI-0123456789abcdef0"}, "is not an AMI id"),
        ({"target": "gcp"}, "target: unknown target 'gcp'; choose one of: local, aws"),
        ({"cluster": "Bad_Name"}, "cluster: 'Bad_Name' must be 2-24 characters"),
        ({"managers": "three"}, "managers: 'three' is not a valid whole number"),
        ({"managers": 2.5}, "managers: 2.5 is not a valid whole number"),
        ({"allowed_ssh_cidrs": "0.0.0.0/0"}, "opens SSH to the whole internet"),
        ({"allowed_ssh_cidrs": "10.0.0.1/8"}, "is not a network"),
        ({"region": "mars"}, "region: 'mars' is not an AWS region name"),
        ({"parallelism": 0}, "parallelism: 0 must be from 1 to 100"),
        ({"colour": "blue"}, "unknown setting swarmforge.colour"),
        # SSH open to the whole internet in pieces, not only as one /0.
        ({"allowed_ssh_cidrs": "0.0.0.0/1,128.0.0.0/1"},
         "allowed_ssh_cidrs: together, 0.0.0.0/1, 128.0.0.0/1 open SSH to the whole internet"),
        ({"allowed_ssh_cidrs": ",".join(f"{i}.0.0.0/8" for i in range(256))},
         "0.0.0.0/8, 1.0.0.0/8, 2.0.0.0/8, 3.0.0.0/8 and 252 more open SSH to the whole internet"),
        ({"allowed_ssh_cidrs": ["0.0.0.0/1", "10.0.0.0/8", "128.0.0.0/2", "192.0.0.0/2"]},
         "open SSH to the whole internet"),
        ({"allowed_ssh_cidrs": "::/1,8000::/1"}, "open SSH to the whole internet"),
        # The settings of a real account (README, "Settings for a real account").
        ({"vpc_id": "vpc-123", "subnet_ids": SUBNET_A}, "vpc_id: 'vpc-123' is not an id such as"),
        ({"subnet_ids": SUBNET_A}, "vpc_id, subnet_ids: set both"),
        ({"vpc_id": VPC}, "vpc_id, subnet_ids: set both"),
        ({"vpc_id": VPC, "subnet_ids": f"{SUBNET_A},sub-1"}, "subnet_ids: 'sub-1' is not an id"),
        ({"worker_subnet_ids": SUBNET_B}, "worker_subnet_ids: subnets of vpc_id"),
        ({"create_nat_gateway": "maybe"}, "create_nat_gateway: 'maybe' is not a valid true/false"),
        ({**NAT, "worker_public_ip": True}, "create_nat_gateway: only private workers need one"),
        ({**NAT, "worker_subnet_ids": None}, "create_nat_gateway: name the private subnets"),
        ({**NAT, "worker_subnet_ids": SUBNET_A},
         f"worker_subnet_ids: {SUBNET_A} also in subnet_ids: private workers need subnets of "
         "their own"),
        ({"private_route_table_id": "rtb-0123456789abcdef0"},
         "private_route_table_id: the NAT gateway's route goes there: set create_nat_gateway"),
        ({**NAT, "private_route_table_id": "rtb-42"}, "private_route_table_id: 'rtb-42' is not an id"),
        ({"public_ports": "http"}, "public_ports: 'http' is not a valid list of ports such as"),
        ({"public_ports": [{"port": 80, "proto": "tcp"}]}, "is not a valid list of ports"),
        ({"public_ports": "80/tcp,22"}, "public_ports: 22 is SSH's (allowed_ssh_cidrs) or the "
                                        "swarm's own (2377, 7946, 4789): never published"),
        ({"public_ports": "7946/udp"}, "public_ports: 7946 is SSH's"),
        ({"public_ports": "0"}, "public_ports: 0 is not a port from 1 to 65535"),
        ({"public_ports": "70000/udp"}, "public_ports: 70000 is not a port from 1 to 65535"),
        ({"public_ports": "80/sctp"}, "public_ports: 80/sctp: the protocol must be tcp or udp"),
        ({"public_ports": "443,443/tcp"}, "public_ports: 443/tcp is listed twice"),
        ({"public_ports": [{"port": 443, "cidrs": ["10.0.0.1/8"]}]},
         "public_ports (443/tcp) cidrs: '10.0.0.1/8' is not an IPv4 network"),
        ({"public_cidrs": "2001:db8::/32"}, "public_cidrs: '2001:db8::/32' is not an IPv4 network"),
        ({"iam_instance_profile": "arn:aws:iam::123456789012:instance-profile/swarm"},
         "iam_instance_profile: 'arn:aws:iam::123456789012:instance-profile/swarm' is not an "
         "instance profile's name"),
        ({"instance_type": "T3.small"}, "instance_type: 'T3.small' is not an EC2 instance type"),
        ({"manager_instance_type": "big"}, "manager_instance_type: 'big' is not an EC2 instance"),
        ({"worker_instance_type": "m6i large"}, "worker_instance_type: 'm6i large' is not an EC2"),
        ({"root_volume_size": 4}, "root_volume_size: 4 must be from 8 to 16384 (GiB)"),
        ({"root_volume_size": "20G"}, "root_volume_size: '20G' is not a valid whole number"),
        ({"root_volume_kms_key_id": "alias/aws/ebs"},
         "root_volume_kms_key_id: 'alias/aws/ebs' is not a KMS key ARN"),
        ({"tags": "team"}, "tags: 'team' is not a valid list of tags such as team=infra,env=prod"),
        ({"tags": "Cluster=other"}, "tags: Cluster is set by terraform/aws itself"),
        ({"tags": {"Name": "mine"}}, "tags: Name is set by terraform/aws itself"),
        ({"tags": "aws:owner=me"}, "tags: aws:owner: the aws: prefix is reserved for AWS"),
        ({"tags": "team=a,team=b"}, "tags: team is given twice"),
        ({"tags": {"k" * 129: "v"}}, "a key is 1 to 128 characters"),
        ({"tags": {"team": "v" * 257}}, "tags: team: a value is at most 256 characters"),
    ],
)
def test_each_bad_input_gives_one_clear_line(flags: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, flags)
    assert len(caught.value.problems) == 1
    assert expected in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"managers": 0, "workers": -2, "target": "nope"})
    assert len(caught.value.problems) == 3


TIMEOUTS = ("health_timeout", "terraform_timeout", "packer_timeout", "ssh_timeout")


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [float("nan"), "nan", float("inf"), "inf", "-inf", 0, "0", -1])
def test_every_timeout_is_a_finite_number_of_seconds_more_than_0(name: str, value: object) -> None:
    # nan compares false with everything: "seconds <= 0" alone would let it through.
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {name: value})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{name}: ")
    assert caught.value.problems[0].endswith("must be a number of seconds more than 0")


def test_timeouts_come_from_env_vars_and_have_generous_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_PACKER_TIMEOUT", "1")
    monkeypatch.setenv("INVOKE_SWARMFORGE_SSH_TIMEOUT", "nan")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    with pytest.raises(ConfigError) as caught:
        load_settings(config["swarmforge"], {})
    assert caught.value.problems == ["ssh_timeout: nan must be a number of seconds more than 0"]
    settings = load_settings({**config["swarmforge"], "ssh_timeout": None}, {})
    assert (settings.packer_timeout, settings.terraform_timeout, settings.ssh_timeout) == (
        1.0, 3600.0, 300.0)


def test_a_real_accounts_settings_in_yaml_form() -> None:
    """invoke.yaml's forms: lists, a mapping of tags, ports as text or as mappings."""
    settings = load_settings({
        **NAT, "subnet_ids": [SUBNET_A], "worker_subnet_ids": [SUBNET_B],
        "private_route_table_id": "rtb-0123456789abcdef0",
        "public_ports": [80, "443/TCP", {"port": 53, "protocol": "udp"},
                         {"port": 8443, "cidrs": ["198.51.100.0/24"]}],
        "public_cidrs": ["203.0.113.0/24"],
        "iam_instance_profile": "swarm-nodes", "worker_instance_type": "m6i.large",
        "root_volume_size": 100,
        "root_volume_kms_key_id": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab",
        "tags": {"team": "platform", "cost-center": 4711},
    }, {})

    assert settings.public_ports == (
        PublicPort(80, "tcp"), PublicPort(443, "tcp"), PublicPort(53, "udp"),
        PublicPort(8443, "tcp", ("198.51.100.0/24",)))
    assert settings.tags == (("team", "platform"), ("cost-center", "4711"))
    assert (settings.worker_instance_type, settings.manager_instance_type) == ("m6i.large", None)
    assert settings.root_volume_size == 100


def test_public_ports_may_be_open_to_the_world() -> None:
    """Only SSH is kept from the whole internet: a published web service is meant for it."""
    settings = load_settings({}, {"public_ports": "80,443",
                                  "public_cidrs": "0.0.0.0/1,128.0.0.0/1"})
    assert settings.public_cidrs == ("0.0.0.0/1", "128.0.0.0/1")
    assert load_settings({}, {"public_cidrs": "0.0.0.0/0"}).public_cidrs == ("0.0.0.0/0",)


def test_ssh_networks_with_a_gap_are_not_the_whole_internet() -> None:
    cidrs = ("0.0.0.0/1", "0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/2")  # 192.0.0.0/2 left out
    assert load_settings({}, {"allowed_ssh_cidrs": list(cidrs)}).allowed_ssh_cidrs == cidrs


def test_the_account_settings_come_from_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"VPC_ID": VPC, "SUBNET_IDS": SUBNET_A, "WORKER_SUBNET_IDS": SUBNET_B,
                        "WORKER_PUBLIC_IP": "false", "CREATE_NAT_GATEWAY": "true",
                        "PUBLIC_PORTS": "80/tcp,443", "PUBLIC_CIDRS": "198.51.100.0/24",
                        "ROOT_VOLUME_SIZE": "30", "TAGS": "team=platform,env=prod"}.items():
        monkeypatch.setenv(f"INVOKE_SWARMFORGE_{name}", value)
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()

    settings = load_settings(config["swarmforge"], {})

    assert (settings.vpc_id, settings.subnet_ids, settings.worker_subnet_ids) == (
        VPC, (SUBNET_A,), (SUBNET_B,))
    assert (settings.worker_public_ip, settings.create_nat_gateway) == (False, True)
    assert settings.public_ports == (PublicPort(80), PublicPort(443))
    assert settings.public_cidrs == ("198.51.100.0/24",)
    assert settings.root_volume_size == 30
    assert settings.tags == (("team", "platform"), ("env", "prod"))


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("no", False), ("0", False),
                                                ("true", True), ("yes", True)])
def test_true_false_settings_read_false_from_env_vars(monkeypatch: pytest.MonkeyPatch,
                                                      text: str, expected: bool) -> None:
    """Invoke alone made any non-empty text True for a true/false default, "false" too:
    WORKER_PUBLIC_IP=false gave public workers, CREATE_NAT_GATEWAY=false a NAT gateway."""
    monkeypatch.setenv("INVOKE_SWARMFORGE_WORKER_PUBLIC_IP", text)
    monkeypatch.setenv("INVOKE_SWARMFORGE_ALLOW_EVEN_MANAGERS", text)
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()

    settings = load_settings(config["swarmforge"], {"managers": 3})

    assert (settings.worker_public_ip, settings.allow_even_managers) == (expected, expected)
    assert load_settings(Config(defaults={"swarmforge": config_defaults()})["swarmforge"],
                         {}).worker_public_ip is True  # unset: the default


def test_even_managers_need_the_explicit_flag() -> None:
    assert load_settings({}, {"managers": 4, "allow_even_managers": True}).managers == 4


def test_flags_beat_config_beat_defaults() -> None:
    settings = load_settings({"managers": 5, "workers": 7}, {"workers": "3", "managers": None})
    assert (settings.managers, settings.workers, settings.cluster) == (5, 3, Settings().cluster)


def test_env_vars_reach_settings_through_invoke_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_WORKERS", "4")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    assert load_settings(config["swarmforge"], {}).workers == 4


def test_list_settings_come_from_env_vars_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_PRELOAD_IMAGES", "/a.tar,/b.tar")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    assert load_settings(config["swarmforge"], {}).preload_images == ("/a.tar", "/b.tar")


def test_the_cli_refuses_bad_input_before_creating_anything(tmp_path: Path) -> None:
    result = invoke("apply", "--target", "local", "--cluster", "refused", "--managers", "2",
                    state_dir=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "swarmforge: managers: 2 is even; 2 managers survive only 0 failure(s), as 1 do: "
        "use 1 or 3, or pass --allow-even-managers"
    ]
    assert list(tmp_path.iterdir()) == []
    assert not Path("/run/swarmforge/refused").exists()


def test_the_local_target_refuses_more_workers_than_its_network_holds() -> None:


    with pytest.raises(ConfigError) as caught:
        target_for(load_settings({}, {"workers": 151}))
    assert str(caught.value) == "workers: the local sandbox holds at most 150 workers"
