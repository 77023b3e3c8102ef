"""Settings: every bad input is refused up front, one clear line each, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Config

from swarmforge.cluster import Cluster
from swarmforge.errors import ConfigError
from swarmforge.runtime import runtime_dir
from swarmforge.settings import PublicPort, Settings, config_defaults, load_settings
from swarmforge.swarm import DEAD_AFTER
from swarmforge.targets import target_for
from swarmforge.targets.local.image_store import LocalImageStore
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
        ({"parallelism": 0}, "parallelism: 0 must be from 1 to 256"),
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


TIMEOUTS = ("health_timeout", "dead_after", "terraform_timeout", "packer_timeout", "ssh_timeout")


@pytest.mark.parametrize("name", TIMEOUTS)
@pytest.mark.parametrize("value", [float("nan"), "nan", float("inf"), "inf", "-inf", 0, "0", -1])
def test_every_timeout_is_a_finite_number_of_seconds_more_than_0(name: str, value: object) -> None:
    # nan compares false with everything: "seconds <= 0" alone would let it through.
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {name: value})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{name}: ")
    assert caught.value.problems[0].endswith("must be a number of seconds more than 0 and at most "
                                             "604800 (7 days)")


def test_timeouts_come_from_env_vars_and_have_generous_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKE_SWARMFORGE_PACKER_TIMEOUT", "1")
    monkeypatch.setenv("INVOKE_SWARMFORGE_SSH_TIMEOUT", "nan")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    with pytest.raises(ConfigError) as caught:
        load_settings(config["swarmforge"], {})
    assert caught.value.problems == ["ssh_timeout: nan must be a number of seconds more than 0 "
                                     "and at most 604800 (7 days)"]
    settings = load_settings({**config["swarmforge"], "ssh_timeout": None}, {})
    assert (settings.packer_timeout, settings.terraform_timeout, settings.ssh_timeout) == (
        1.0, 3600.0, 300.0)


def test_dead_after_defaults_to_a_reboots_length_and_an_env_var_lowers_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings({}, {}).dead_after == DEAD_AFTER == 60.0
    monkeypatch.setenv("INVOKE_SWARMFORGE_DEAD_AFTER", "15")
    config = Config(defaults={"swarmforge": config_defaults()})
    config.load_shell_env()
    assert load_settings(config["swarmforge"], {}).dead_after == 15.0


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


@pytest.mark.parametrize(("target", "default"), [("aws", 10), ("local", 30)])
def test_parallelism_unset_is_the_targets_own_and_a_setting_beats_it(target: str,
                                                                     default: int) -> None:
    assert Cluster(load_settings({}, {"target": target})).parallelism == default
    chosen = load_settings({"parallelism": 4}, {"target": target})
    assert Cluster(chosen).parallelism == 4


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


# --- bounded input: names, numbers and text that reach ssh_config, a shell or Terraform --------

AWS_OFFLINE = {"INVOKE_SWARMFORGE_TARGET": "aws", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
               # port 9 (discard) has no listener: nothing here may reach AWS
               "INVOKE_SWARMFORGE_AWS_ENDPOINT": "http://127.0.0.1:9"}
INJECTION = "ubuntu\n  ProxyCommand touch /tmp/swarmforge-injected"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        # Python's `$` matches before a trailing line break: "demo\n" passed as a name.
        ({"cluster": "demo\n"}, "cluster: 'demo\\n' must be 2-24 characters"),
        # terraform/aws names the security group "<cluster>-swarm-..." and EC2 refuses
        # group names that start with "sg-".
        ({"cluster": "sg-web"}, "cluster: 'sg-web' starts with 'sg-', which EC2 keeps for "
                                "security group ids"),
        ({"workers": 501}, "workers: 501 is more than 500"),
        ({"parallelism": 257}, "parallelism: 257 must be from 1 to 256"),
        # 1e9 s passes "finite", and every wait with it dies with OverflowError.
        ({"health_timeout": "1e9"}, "health_timeout: 1000000000.0 must be a number of seconds "
                                    "more than 0 and at most 604800 (7 days)"),
        ({"docker_log_max_file": 1001}, "docker_log_max_file: 1001 must be from 1 to 1000"),
        ({"ssh_user": INJECTION}, f"ssh_user: {INJECTION!r} is not a user name"),
        ({"ssh_user": "-oProxyCommand=x"}, "ssh_user: '-oProxyCommand=x' is not a user name"),
        ({"ssh_user": "Ubuntu"}, "ssh_user: 'Ubuntu' is not a user name"),
        ({"ssh_key": "/k\n  ProxyCommand x"}, "ssh_key: '/k\\n  ProxyCommand x' must be a path"),
        ({"ssh_key": "/keys/my key"}, "ssh_key: '/keys/my key' must be a path"),
        ({"ssh_key": "%d/.ssh/id"}, "ssh_key: '%d/.ssh/id' must be a path"),
        ({"ssh_key": "${HOME}/id"}, "ssh_key: '${HOME}/id' must be a path"),
        ({"state_dir": "/srv/swarm state"}, "state_dir: '/srv/swarm state' must be a path of"),
        ({"state_dir": "/srv/state\n"}, "state_dir: '/srv/state\\n' must be a path of"),
        ({"key_name": "ops\n"}, "key_name: 'ops\\n' must be 1 to 255 printable ASCII characters"),
        ({"key_name": "k" * 256}, "must be 1 to 255 printable ASCII characters"),
        ({"state_lock_table": "tf locks"}, "state_lock_table: 'tf locks' is not a DynamoDB table"),
        ({"state_endpoint": "s3.example.com"}, "state_endpoint: 's3.example.com' is not an "
                                               "http(s) URL"),
        # urlsplit drops line breaks and tabs: the URL looked fine with one inside.
        ({"aws_endpoint": "http://127.0.0.1:5000\n"}, "aws_endpoint: 'http://127.0.0.1:5000\\n' "
                                                      "is not an http(s) URL"),
        ({"region": "us-east-1\n"}, "region: 'us-east-1\\n' is not an AWS region name"),
        ({"region": "eu-foo-bar-1"}, "region: 'eu-foo-bar-1' is not an AWS region name"),
        ({"instance_type": "t3.small\n"}, "instance_type: 't3.small\\n' is not an EC2 instance"),
        ({"terraform_bin": "/usr/bin/terraform\n"},
         "terraform_bin: '/usr/bin/terraform\\n' holds a control character"),
        ({"preload_images": ["/a.tar\n/b.tar"]},
         "preload_images: '/a.tar\\n/b.tar' holds a control character"),
        ({"tags": {"team": "a\nb"}}, "tags: 'team': 'a\\nb' holds a control character"),
        ({"tags": {"aws:x\ny": "v"}}, "tags: 'aws:x\\ny' holds a control character"),
    ],
)
def test_each_unbounded_input_is_refused_in_one_line(flags: dict[str, object],
                                                     expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({}, flags)
    assert len(caught.value.problems) == 1, caught.value.problems
    assert expected in caught.value.problems[0]
    assert "\n" not in caught.value.problems[0]


@pytest.mark.parametrize("flags", [
    {"parallelism": 256}, {"workers": 500}, {"ssh_user": "ec2-user"}, {"ssh_user": "_ops1"},
    {"ssh_key": "~/.ssh/id_ed25519"}, {"ssh_key": "/keys/ops+ci@corp,2.pem"},
    {"key_name": "ops key (2024)"}, {"state_lock_table": "tf-locks.v1"},
    {"state_endpoint": "https://s3.example.com"}, {"region": "us-gov-west-1"},
    {"region": "us-isob-east-1"}, {"health_timeout": 604800}, {"docker_log_max_file": 1000},
])
def test_the_edges_of_each_rule_are_accepted(flags: dict[str, object]) -> None:
    settings = load_settings({}, flags)
    assert {name: getattr(settings, name) for name in flags} == flags


def test_no_cluster_name_is_a_shared_dir_of_the_state_dir(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The state dir holds a dir per cluster and the dirs all clusters share; no cluster may
    be named as one of those. Each shared dir is asked of the code that makes it."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)  # else the runtime dir is not ours
    state = tmp_path.resolve()
    settings = load_settings({}, {"state_dir": str(state)})
    shared = [settings.build_dir.parent, LocalImageStore.of(settings).root, runtime_dir(state)]
    names = {path.relative_to(state).parts[0] for path in shared}
    assert names == {"_build", "_images", "_run"}
    for name in sorted(names):
        with pytest.raises(ConfigError) as caught:
            load_settings({}, {"cluster": name})
        assert caught.value.problems[0].startswith(f"cluster: {name!r} must be")


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        # 8: numeric flags (not settings): parsed here, never by Invoke's int() (a traceback)
        (("roll", "--max-unavailable", "0"), {},
         "--max-unavailable: '0' must be a whole number, 1 or more"),
        (("roll", "--max-unavailable", "-1"), {},
         "--max-unavailable: '-1' must be a whole number, 1 or more"),
        (("roll", "--max-unavailable", "abc"), {},
         "--max-unavailable: 'abc' must be a whole number, 1 or more"),
        (("roll", "--drain-timeout", "inf"), {},
         "--drain-timeout: 'inf' must be a number of seconds more than 0 and at most 604800 "
         "(7 days)"),
        (("replace-node", "x-worker-0", "--drain-timeout", "nan"), {},
         "--drain-timeout: 'nan' must be a number of seconds more than 0 and at most 604800 "
         "(7 days)"),
        (("prune-amis", "--keep", "0"), {}, "--keep: '0' must be a whole number, 1 or more"),
        (("rebuild", "--keep", "-2"), {}, "--keep: '-2' must be a whole number, 1 or more"),
        (("rebuild", "--max-age-days", "-1"), {},
         "--max-age-days: '-1' must be a number of days, 0 or more"),
        # 8: numeric settings
        (("status",), {"INVOKE_SWARMFORGE_HEALTH_TIMEOUT": "1e9"},
         "health_timeout: 1000000000.0 must be a number of seconds more than 0 and at most "
         "604800 (7 days)"),
        (("status",), {"INVOKE_SWARMFORGE_PARALLELISM": "1000"},
         "parallelism: 1000 must be from 1 to 256"),
        # 6: a cluster name EC2 would refuse halfway through the first apply
        (("status", "--cluster", "sg-web"), {},
         "cluster: 'sg-web' starts with 'sg-', which EC2 keeps for security group ids"),
        # 9: text that would reach ssh_config (a ProxyCommand runs a shell line)
        (("status",), {"INVOKE_SWARMFORGE_SSH_USER": INJECTION},
         f"ssh_user: {INJECTION!r} is not a user name: 1 to 32 of a-z, 0-9, '_' and '-', "
         "starting with a-z or '_'"),
    ],
)
def test_the_cli_refuses_unbounded_input_in_one_line_creating_nothing(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str], expected: str) -> None:
    state = tmp_path / "state"
    result = invoke(*args, state_dir=state, env={**AWS_OFFLINE, **env}, timeout=120)
    assert (result.returncode, result.stderr.strip().splitlines()) == (2, [f"swarmforge: {expected}"])
    assert not state.exists()
