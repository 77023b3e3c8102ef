"""Which AMI apply uses, `invoke amis` and `invoke prune-amis`: against moto's server
(real HTTP, real boto3), the tasks through the real `invoke` CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from swarmforge.errors import AmiError, ConfigError
from swarmforge.settings import Settings, load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.ami_choice import FROM_FLAG, FROM_NEWEST, choose_ami, recorded_in
from swarmforge.targets.aws.amis import BakeRecord, ClusterAmis, parameter_name, record_path
from tests.conftest import invoke, unique_cluster
from tests.test_amis import Baker, launch, snapshot_exists
from tests.test_bake import aws_cluster_env

REGION = "eu-west-1"


@pytest.fixture
def ec2(endpoint: str) -> Any:
    return client("ec2", REGION, endpoint)


@pytest.fixture
def settings(endpoint: str, tmp_path: Path) -> Settings:
    # A whole aws cluster's settings: prune-amis takes the cluster's lock, in the state bucket.
    return load_settings({}, {"cluster": unique_cluster("ami"), "region": REGION,
                              "state_dir": str(tmp_path / "state"), "aws_endpoint": endpoint,
                              **cluster_flags(endpoint, tmp_path)})


def cluster_flags(endpoint: str, tmp_path: Path) -> dict[str, str]:
    return {name.removeprefix("INVOKE_SWARMFORGE_").lower(): value
            for name, value in aws_cluster_env(endpoint).items()}


def cluster_env(settings: Settings) -> dict[str, str]:
    """``settings``' own cluster settings, for a task run through the CLI."""
    return {f"INVOKE_SWARMFORGE_{name.upper()}": str(getattr(settings, name))
            for name in ("state_bucket", "state_region", "state_endpoint", "key_name", "ssh_key")
            } | {"INVOKE_SWARMFORGE_ALLOWED_SSH_CIDRS": ",".join(settings.allowed_ssh_cidrs)}


@pytest.fixture
def baker(ec2: Any, settings: Settings) -> Baker:
    return Baker(ec2, settings.cluster)


def local_record(settings: Settings, amis: dict[str, str]) -> None:
    """What a bake on this machine leaves behind."""
    BakeRecord(cluster=settings.cluster, amis=amis, docker_version="27.*", git_commit="c0ffee",
               packer_run_uuid="run", baked_at="2026-01-01T00:00:00+00:00",
               log="packer-build.log").save(record_path(settings))


# --- choose_ami: SSM is the one AMI of record --------------------------------------------


def test_no_ami_anywhere_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(AmiError, match=f"no AMI for cluster '{settings.cluster}' in {REGION}"):
        choose_ami(settings)


def test_flag_beats_ssm_beats_newest_tag(settings: Settings, baker: Baker) -> None:
    in_ssm, newest = baker.bake(), baker.bake()
    assert choose_ami(settings) == (newest, FROM_NEWEST)
    assert FROM_NEWEST == "newest AMI tagged for the cluster"

    ClusterAmis.of(settings).record_current(in_ssm)
    assert choose_ami(settings) == (in_ssm, f"SSM /swarmforge/{settings.cluster}/ami-id")
    assert recorded_in(settings.cluster) == f"SSM {parameter_name(settings.cluster)}"

    given = "ami-0123456789abcdef0"
    assert choose_ami(dataclasses.replace(settings, ami_id=given)) == (given, FROM_FLAG)
    assert FROM_FLAG == "--ami"


def test_a_local_record_that_agrees_with_ssm_is_fine(settings: Settings, baker: Baker) -> None:
    baked = baker.bake()
    ClusterAmis.of(settings).record_current(baked)
    local_record(settings, {REGION: baked, "us-east-1": "ami-0123456789abcdef0"})

    assert choose_ami(settings) == (baked, recorded_in(settings.cluster))


def test_a_stale_local_record_never_beats_ssm(settings: Settings, baker: Baker) -> None:
    """Changed on purpose: the local ami.json used to win over SSM, so a laptop that baked
    last month rolled the cluster back to that bake. Now it is refused, both ids shown."""
    on_this_machine, rebuilt_by_ci = baker.bake(), baker.bake()
    local_record(settings, {REGION: on_this_machine})
    ClusterAmis.of(settings).record_current(rebuilt_by_ci)

    with pytest.raises(ConfigError) as refused:
        choose_ami(settings)

    path, parameter = record_path(settings), parameter_name(settings.cluster)
    assert str(refused.value) == (
        f"{path} records {on_this_machine} for {REGION}, but the AMI of record, SSM {parameter} "
        f"in {REGION}, is {rebuilt_by_ci} (written by a later bake or by hand): remove {path} "
        f"to launch {rebuilt_by_ci}, or pass --ami {on_this_machine} to launch "
        f"{on_this_machine} on purpose")
    # Either way out works: the explicit override, or the local record gone.
    flag = dataclasses.replace(settings, ami_id=on_this_machine)
    assert choose_ami(flag) == (on_this_machine, FROM_FLAG)
    path.unlink()
    assert choose_ami(settings) == (rebuilt_by_ci, recorded_in(settings.cluster))


def test_a_local_record_that_ssm_lacks_is_refused(settings: Settings, baker: Baker) -> None:
    """Changed on purpose: a local record with nothing in SSM used to be launched; nobody
    can tell now whether it is current, so it is refused rather than preferred to the
    newest tagged AMI or used blindly."""
    on_this_machine = baker.bake()
    baker.bake()  # newer, tagged: would be FROM_NEWEST without the local record
    local_record(settings, {REGION: on_this_machine})

    with pytest.raises(ConfigError) as refused:
        choose_ami(settings)

    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{record_path(settings)} records {on_this_machine} for {REGION}, "
                              f"but SSM {parameter_name(settings.cluster)} in {REGION} holds no "
                              "AMI of record: run `invoke bake --cluster")
    assert f"pass --ami {on_this_machine}" in message


def test_a_record_for_other_regions_only_is_passed_over(settings: Settings, baker: Baker) -> None:
    newest = baker.bake()
    local_record(settings, {"us-east-1": "ami-0123456789abcdef0"})

    assert choose_ami(settings) == (newest, FROM_NEWEST)


def test_an_unreadable_record_is_a_clear_error(settings: Settings) -> None:
    path = record_path(settings)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    with pytest.raises(AmiError, match="cannot read the bake record"):
        choose_ami(settings)


# --- invoke amis / prune-amis ----------------------------------------------------------------


class Fleet:
    """A cluster's AMIs, oldest first, in every situation pruning must tell apart."""

    def __init__(self, ec2: Any, baker: Baker, settings: Settings) -> None:
        self.ec2 = ec2
        self.running, self.stopped, self.gone, self.current, self.idle, self.newest = (
            baker.bake() for _ in range(6))
        launch(ec2, self.running)
        ec2.stop_instances(InstanceIds=[launch(ec2, self.stopped)])
        ec2.terminate_instances(InstanceIds=[launch(ec2, self.gone)])
        ClusterAmis.of(settings).record_current(self.current)
        self.snapshots = {image["ImageId"]: [m["Ebs"]["SnapshotId"]
                                             for m in image["BlockDeviceMappings"] if "Ebs" in m]
                          for image in ec2.describe_images(Owners=["self"])["Images"]}

    def all(self) -> list[str]:
        return [self.running, self.stopped, self.gone, self.current, self.idle, self.newest]

    def left(self) -> set[str]:
        answer = self.ec2.describe_images(ImageIds=self.all())  # moto skips the missing ones
        return {image["ImageId"] for image in answer["Images"]}

    def snapshots_left(self) -> set[str]:
        return {ami for ami in self.all()
                if all(snapshot_exists(self.ec2, s) for s in self.snapshots[ami])}


@pytest.fixture
def fleet(ec2: Any, baker: Baker, settings: Settings) -> Fleet:
    return Fleet(ec2, baker, settings)


def run(settings: Settings, *args: str) -> Any:
    assert settings.aws_endpoint
    done = invoke(*args, "--cluster", settings.cluster, "--region", REGION,
                  state_dir=Path(settings.state_dir),
                  env={"INVOKE_SWARMFORGE_AWS_ENDPOINT": settings.aws_endpoint,
                       "INVOKE_SWARMFORGE_TARGET": "aws", **cluster_env(settings)}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def rows(table: str) -> dict[str, list[str]]:
    """{AMI id: the other columns}; CREATED spans two words (date and time)."""
    found = {}
    for line in table.splitlines():
        if line.startswith("ami-"):
            ami, date, time, *rest = line.split()
            found[ami] = [f"{date} {time}", *rest]
    return found


def test_amis_lists_provenance_use_and_current(settings: Settings, fleet: Fleet) -> None:
    listed = rows(run(settings, "amis").stdout)

    assert list(listed) == fleet.all()[::-1]  # newest first
    in_use = {ami for ami, columns in listed.items() if columns[3] == "yes"}
    current = {ami for ami, columns in listed.items() if columns[4] == "yes"}
    assert in_use == {fleet.running, fleet.stopped}
    assert current == {fleet.current}
    docker, commit = listed[fleet.newest][1:3]
    assert (docker, commit) == ("27.3.*", "commit6")


def test_amis_of_a_cluster_without_any(settings: Settings) -> None:
    assert "has no AMIs in eu-west-1" in run(settings, "amis").stdout


def test_prune_previews_by_default_and_changes_nothing(settings: Settings, fleet: Fleet) -> None:
    for flags in ([], ["--dry-run", "--yes"]):
        preview = run(settings, "prune-amis", "--keep", "1", *flags).stdout

        actions = {ami: " ".join(columns[3:]) for ami, columns in rows(preview).items()}
        assert actions == {
            fleet.newest: "keep (among the newest)",
            fleet.idle: "delete",
            fleet.current: "keep (current)",
            fleet.gone: "delete",
            fleet.stopped: "keep (in use)",
            fleet.running: "keep (in use)",
        }
        assert "preview: 2 AMI(s) would be deregistered" in preview
        assert fleet.left() == fleet.snapshots_left() == set(fleet.all())


def test_prune_with_yes_deletes_amis_and_their_snapshots(settings: Settings, fleet: Fleet,
                                                         ec2: Any) -> None:
    other = Baker(ec2, unique_cluster("other")).bake()

    done = run(settings, "prune-amis", "--keep", "2", "--yes")

    assert f"deregistered {fleet.gone} and deleted their snapshots" in done.stdout
    assert fleet.left() == fleet.snapshots_left() == set(fleet.all()) - {fleet.gone}

    run(settings, "prune-amis", "--keep", "1", "--yes")  # 1 at least: the newest always stays

    # in use (running, stopped), current, the newest
    kept = {fleet.running, fleet.stopped, fleet.current, fleet.newest}
    assert fleet.left() == fleet.snapshots_left() == kept
    assert ec2.describe_images(ImageIds=[other])["Images"]  # another cluster's: untouched
    again = run(settings, "prune-amis", "--keep", "1", "--yes").stdout
    assert "nothing to prune" in again


# --- the endpoint setting and AWS errors ------------------------------------------------------


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:21", "127.0.0.1:5000", "http://host:port"])
def test_a_bad_aws_endpoint_is_refused_before_any_call(url: str, tmp_path: Path) -> None:
    refused = invoke("amis", "--target", "aws", state_dir=tmp_path,
                     env={"INVOKE_SWARMFORGE_AWS_ENDPOINT": url})

    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"swarmforge: aws_endpoint: {url!r} is not an http(s) URL such as http://127.0.0.1:5000"
    )


def test_an_unreachable_aws_is_one_clear_line(endpoint: str, tmp_path: Path) -> None:
    # endpoint: fake credentials in the environment; port 9 (discard) has no listener.
    failed = invoke("amis", "--target", "aws", state_dir=tmp_path,
                    env={"INVOKE_SWARMFORGE_AWS_ENDPOINT": "http://127.0.0.1:9"})

    assert failed.returncode == 1
    assert failed.stderr.strip() == (
        'swarmforge: AWS: Could not connect to the endpoint URL: "http://127.0.0.1:9/"'
    )
