"""`invoke bake` end to end: the real CLI, the real task code, moto's server for AWS.

No AMI can be built here, so tests/fakes/packer stands in for Packer's build: it
replays a transcript from tests/data/packer/ and records every call (argv, env,
files). As a real build would, each test first makes the AMIs the transcript
announces on moto, and the replayed transcript and manifest carry their ids.
`--dry-run` runs the real Packer Debian ships (1.6.6).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import hcl2
import pytest
from botocore.exceptions import ClientError

from swarmforge.settings import load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.ami_choice import choose_ami, recorded_in
from swarmforge.targets.aws.amis import CLUSTER_TAG, COMMIT_TAG, DOCKER_TAG, ClusterAmis, parameter_name
from tests.conftest import REPO, invoke, unique_cluster

DATA = REPO / "tests" / "data" / "packer"
FAKES = REPO / "tests" / "fakes"
TEMPLATE_DIR = REPO / "packer"
BASE_AMI = "ami-03cf127a"  # one of the public AMIs moto ships in every region
EAST, WEST = "us-east-1", "eu-west-1"
# The AMI ids in the amazon-*.log transcripts and manifests.
TRANSCRIPT_AMIS = {EAST: "ami-0123456789abcdef0", WEST: "ami-0aaaaaaaaaaaaaaa1"}
BUILD_NUMBERS = itertools.count(1)


def packer_made_ami(endpoint: str, region: str, cluster: str) -> str:
    """An AMI as the amazon-ebs builder leaves it: from an instance, AMI and snapshots tagged."""
    ec2 = client("ec2", region, endpoint)
    instance = ec2.run_instances(ImageId=BASE_AMI, MinCount=1, MaxCount=1)["Instances"][0]
    # Names carry the build time; moto stamps whole seconds, so a counter orders them.
    name = f"swarmforge-{cluster}-docker-20261123-{next(BUILD_NUMBERS):06d}"
    ami_id: str = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    image = ec2.describe_images(ImageIds=[ami_id])["Images"][0]
    snapshots = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    tags = {CLUSTER_TAG: cluster, DOCKER_TAG: "~=27.3", COMMIT_TAG: "from-the-test"}
    ec2.create_tags(Resources=[ami_id, *snapshots],
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return ami_id


def aws_cluster_env(endpoint: str) -> dict[str, str]:
    """The one setting a bake needs beyond the region, as an INVOKE_SWARMFORGE_* variable:
    a state bucket of its own on moto, where the cluster's lock lives (no key pair: the
    nodes' settings are apply's business)."""
    bucket = f"state-{uuid.uuid4().hex[:12]}"
    client("s3", EAST, endpoint).create_bucket(Bucket=bucket)
    return {"INVOKE_SWARMFORGE_STATE_BUCKET": bucket, "INVOKE_SWARMFORGE_STATE_REGION": EAST,
            "INVOKE_SWARMFORGE_STATE_ENDPOINT": endpoint}


class Bake:
    """One cluster's `invoke bake` runs, with the fake Packer first on PATH."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        self.tmp = tmp_path
        self.endpoint = endpoint
        self.cluster = unique_cluster("bake")
        self.state_dir = tmp_path / "state"
        self.calls_file = tmp_path / "packer-calls.jsonl"
        self.env = {
            "PATH": f"{FAKES}{os.pathsep}{os.environ['PATH']}",
            "FAKE_PACKER_RECORD": str(self.calls_file),
            "INVOKE_SWARMFORGE_AWS_ENDPOINT": endpoint,
            "INVOKE_SWARMFORGE_TARGET": "aws",  # the default target is local
            **aws_cluster_env(endpoint),  # a bake takes the cluster's lock, in S3
        }

    @property
    def dir(self) -> Path:
        return self.state_dir / "_build" / self.cluster

    @property
    def record_file(self) -> Path:
        return self.dir / "ami.json"

    def replay(self, name: str, amis: dict[str, str] | None = None, version: str = "1.9.4") -> None:
        """Replay tests/data/packer/<name>.log, its AMI ids replaced by ``amis`` {region: id}."""
        replaced = {TRANSCRIPT_AMIS[region]: ami for region, ami in (amis or {}).items()}
        transcript = self.tmp / "transcripts" / f"{name}.log"
        transcript.parent.mkdir(exist_ok=True)
        transcript.write_text(_replace((DATA / f"{name}.log").read_text(), replaced))
        shutil.copyfile(DATA / f"{name}.exit", transcript.with_suffix(".exit"))
        self.env.update(FAKE_PACKER_TRANSCRIPT=str(transcript), FAKE_PACKER_VERSION=version)
        self.env.pop("FAKE_PACKER_MANIFEST", None)
        manifest = DATA / f"{name}.manifest.json"
        if manifest.exists():
            replayed_manifest = transcript.with_suffix(".manifest.json")
            replayed_manifest.write_text(_replace(manifest.read_text(), replaced))
            self.env["FAKE_PACKER_MANIFEST"] = str(replayed_manifest)

    def run(self, *flags: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return invoke("bake", "--cluster", self.cluster, *flags, state_dir=self.state_dir,
                      env={**self.env, **(env or {})}, timeout=120)

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def recorded_in_ssm(self, region: str) -> str | None:
        ssm = client("ssm", region, self.endpoint)
        try:
            value: str = ssm.get_parameter(Name=parameter_name(self.cluster))["Parameter"]["Value"]
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ParameterNotFound"
            return None
        return value


def _replace(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


@pytest.fixture
def bake(tmp_path: Path, endpoint: str) -> Bake:
    return Bake(tmp_path, endpoint)


def var_file_values(path: Path) -> dict[str, Any]:
    def unquote(value: Any) -> Any:
        return [unquote(v) for v in value] if isinstance(value, list) else json.loads(value)

    with path.open() as handle:
        parsed = hcl2.load(handle)
    return {name: unquote(value) for name, value in parsed.items() if not name.startswith("__")}


def head_commit() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


# --- a successful bake ----------------------------------------------------------------------


def test_bake_builds_prints_and_records_every_region(bake: Bake, endpoint: str) -> None:
    amis = {region: packer_made_ami(endpoint, region, bake.cluster) for region in (EAST, WEST)}
    bake.replay("amazon-multi-region", amis)

    done = bake.run("--region", EAST, "--ami-regions", WEST, "--docker-version", "~=27.3")

    assert done.returncode == 0, done.stderr
    assert f"{EAST}  {amis[EAST]}" in done.stdout.splitlines()
    assert f"{WEST}  {amis[WEST]}" in done.stdout.splitlines()
    # One line per step on stderr, not the apt flood.
    assert "==> amazon-ebs.ubuntu_docker: Launching a source AWS instance..." in done.stderr
    assert "amazon-ebs.ubuntu_docker: ==> Installing Docker Engine, containerd" in done.stderr
    assert "Reading package lists" not in done.stderr and "PACKER_COMMA" not in done.stderr

    # Recorded on AWS, in both regions, and on this machine.
    assert {region: bake.recorded_in_ssm(region) for region in amis} == amis
    record = json.loads(bake.record_file.read_text())
    assert record["amis"] == amis
    assert record["docker_version"] == "~=27.3"
    assert record["git_commit"].startswith(head_commit())
    assert record["packer_run_uuid"] == "9a8b7c6d-1111-4222-8333-444455556666"  # the manifest's
    log = Path(record["log"])
    assert log.parent == bake.dir
    assert log.read_text() == Path(bake.env["FAKE_PACKER_TRANSCRIPT"]).read_text()


def test_bake_renders_validates_then_builds_once(bake: Bake, endpoint: str) -> None:
    bake.replay("amazon-single-region", {EAST: packer_made_ami(endpoint, EAST, bake.cluster)})

    done = bake.run("--region", EAST, "--docker-version", "27.3.*")

    assert done.returncode == 0, done.stderr
    init, validate, build = bake.calls()
    var_file = bake.dir / "bake.pkrvars.hcl"
    assert init["argv"] == ["init", str(TEMPLATE_DIR)]
    assert validate["argv"] == ["validate", f"-var-file={var_file}", str(TEMPLATE_DIR)]
    assert build["argv"] == ["build", "-machine-readable", "-color=false",
                             f"-var-file={var_file}", str(TEMPLATE_DIR)]
    assert build["cwd"] == str(bake.dir)  # Packer's manifest lands beside the record
    assert build["env"]["CHECKPOINT_DISABLE"] == "1"
    assert build["env"]["AWS_ACCESS_KEY_ID"] == "testing"  # Packer gets the credential chain
    values = var_file_values(var_file)
    assert values["cluster"] == bake.cluster
    assert values["region"] == EAST and values["ami_regions"] == []
    assert (values["docker_version"], values["docker_version_min"]) == ("27.3", "")
    assert values["docker_version_spec"] == "27.3.*"
    assert values["scripts_dir"] == str(REPO / "scripts")
    assert values["git_commit"].startswith(head_commit())


def test_apply_finds_the_recorded_bake(bake: Bake, endpoint: str) -> None:
    baked = packer_made_ami(endpoint, EAST, bake.cluster)
    newer = packer_made_ami(endpoint, EAST, bake.cluster)  # tagged, newer, never recorded
    bake.replay("amazon-single-region", {EAST: baked})
    assert bake.run("--region", EAST).returncode == 0

    settings = load_settings({}, {"cluster": bake.cluster, "region": EAST,
                                  "state_dir": str(bake.state_dir), "aws_endpoint": endpoint})

    # SSM and this machine's ami.json, both written by the bake, agree.
    assert choose_ami(settings) == (baked, recorded_in(bake.cluster))
    newest = ClusterAmis.of(settings).newest()
    assert newest is not None and newest.id == newer  # the record beat a newer tagged AMI


# --- failures: a clear message, nothing recorded ------------------------------------------


def test_failed_build_says_why_and_records_nothing(bake: Bake, endpoint: str) -> None:
    bake.replay("amazon-failed")

    failed = bake.run("--region", EAST, "--docker-version", "99.1.*")

    assert failed.returncode == 1
    assert failed.stderr.splitlines()[-4:-1] == [
        "swarmforge: packer build failed (exit 1):",
        "Script exited with non-zero exit status: 2.Allowed exit codes are: [0]",
        "install-docker: no docker-ce 99.1.x in Docker's repository",
    ]
    full_log = failed.stderr.splitlines()[-1].removeprefix("Full log: ")
    assert Path(full_log).read_text() == Path(bake.env["FAKE_PACKER_TRANSCRIPT"]).read_text()
    assert "Traceback" not in failed.stderr
    assert not bake.record_file.exists()
    assert bake.recorded_in_ssm(EAST) is None


def test_failed_build_keeps_the_previous_record(bake: Bake, endpoint: str) -> None:
    first = packer_made_ami(endpoint, EAST, bake.cluster)
    bake.replay("amazon-single-region", {EAST: first})
    assert bake.run("--region", EAST).returncode == 0
    before = bake.record_file.read_text()

    bake.replay("amazon-failed")
    assert bake.run("--region", EAST).returncode == 1

    assert bake.record_file.read_text() == before
    assert bake.recorded_in_ssm(EAST) == first


def test_a_region_packer_did_not_report_is_an_error(bake: Bake, endpoint: str) -> None:
    bake.replay("amazon-single-region", {EAST: packer_made_ami(endpoint, EAST, bake.cluster)})

    failed = bake.run("--region", EAST, "--ami-regions", WEST)

    assert failed.returncode == 1
    assert f"reported no AMI in {WEST}" in failed.stderr
    assert not bake.record_file.exists()
    assert bake.recorded_in_ssm(EAST) is None


def test_bad_inputs_stop_before_packer_runs(bake: Bake) -> None:
    bake.replay("amazon-single-region")

    refused = bake.run("--docker-version", "latest", "--ami-regions", "mars")

    assert refused.returncode == 2
    assert "docker_version: 'latest': not a version specifier" in refused.stderr
    assert "ami_regions: 'mars' is not an AWS region name" in refused.stderr
    assert bake.calls() == []


def test_packer_too_old_to_build_is_refused_before_anything(bake: Bake) -> None:
    bake.replay("amazon-single-region", version="1.6.6")

    refused = bake.run()

    assert refused.returncode == 1
    assert "swarmforge: Packer 1.6.6 cannot run this build: it needs 1.7.0" in refused.stderr
    assert bake.calls() == []
    assert not bake.dir.exists()


def test_missing_packer_is_one_clear_line(bake: Bake, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()

    refused = bake.run(env={"PATH": str(empty)})

    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "swarmforge: packer not found on PATH: install Packer 1.7.0 or newer"
    )


# --- --dry-run ------------------------------------------------------------------------------


def test_dry_run_validates_with_real_packer_and_builds_nothing(bake: Bake) -> None:
    real_path = os.environ["PATH"]  # Debian's packer 1.6.6, not the fake
    assert shutil.which("packer", path=real_path) != str(FAKES / "packer")

    done = bake.run("--dry-run", "--docker-version", "~=27.3", "--ami-regions", WEST,
                    env={"PATH": real_path})

    assert done.returncode == 0, done.stderr
    var_file = bake.dir / "bake.pkrvars.hcl"
    assert f"packer/ is valid with {var_file}; nothing built (--dry-run)" in done.stdout
    assert "checked for syntax only" in done.stdout  # 1.6.6 has no amazon plugin
    assert var_file_values(var_file)["ami_regions"] == [WEST]
    assert sorted(p.name for p in bake.dir.iterdir()) == ["bake.pkrvars.hcl"]  # no log, no record
    assert bake.recorded_in_ssm(EAST) is None


def test_dry_run_never_calls_packer_build(bake: Bake) -> None:
    bake.replay("amazon-single-region")

    done = bake.run("--dry-run")

    assert done.returncode == 0, done.stderr
    assert [call["argv"][0] for call in bake.calls()] == ["init", "validate"]
    assert "nothing built" in done.stdout
    assert "syntax only" not in done.stdout  # Packer with plugins validates fully
