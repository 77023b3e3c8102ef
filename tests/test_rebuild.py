"""`invoke rebuild`: bake only when something changed, then roll and prune.

The aws path runs through the real `invoke` CLI against moto's server, with
tests/fakes/packer replaying a build transcript (as in test_bake.py): each
"packer build" is preceded by making the AMI Packer would have made, tagged as
packer/sources.pkr.hcl tags it. Canonical's Ubuntu AMIs are published straight
into moto's catalogue, the way moto loads its own public AMIs: moto shows no
account another account's images. The clusters here have no nodes (no AWS
provider for Terraform here), so the aws path runs up to the roll, which it
skips with a note; the roll itself runs in the sandbox test at the end.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import hcl2
import pytest
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ec2.models.amis import Ami

from swarmforge.operation import RollRecord
from swarmforge.provenance import ImageFacts, inputs_digest
from swarmforge.rebuild import EXIT_NOTHING_TO_DO, EXIT_REBUILT, RebuildOptions, decide
from swarmforge.settings import Settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.amis import DOCKER_TAG
from swarmforge.targets.aws.provenance import (
    BASE_TAG,
    CANONICAL,
    INPUTS_TAG,
    UBUNTU_NAME,
    UBUNTU_RELEASE,
    base_filters,
)
from swarmforge.targets.aws.target import AwsTarget
from tests.conftest import REPO, invoke
from tests.test_bake import EAST, Bake, packer_made_ami, var_file_values

RELEASES = itertools.count(1)
NOW = datetime(2026, 11, 23, tzinfo=timezone.utc)


def publish_ubuntu(region: str, *, owner: str = CANONICAL, arch: str = "amd64",
                   release: str = UBUNTU_RELEASE) -> str:
    """Canonical publishes a new Ubuntu AMI, newer than every one published before it."""
    backend = ec2_backends[DEFAULT_ACCOUNT_ID][region]
    number = next(RELEASES)
    ami_id = "ami-" + uuid.uuid4().hex[:17]
    name = f"ubuntu/images/hvm-ssd-gp3/ubuntu-{release}-{arch}-server-2026{number:04d}"
    backend.amis[ami_id] = Ami(
        backend, ami_id, name=name, owner_id=owner, public=True, virtualization_type="hvm",
        root_device_type="ebs", architecture="x86_64" if arch == "amd64" else "arm64",
        creation_date=NOW + timedelta(days=number))
    return ami_id


class Rebuild:
    """One aws cluster (no nodes) and its `invoke rebuild` runs, the fake Packer first on PATH."""

    def __init__(self, bake: Bake, endpoint: str, tmp_path: Path) -> None:
        self.bake = bake
        self.endpoint = endpoint
        self.cluster = bake.cluster
        self.ec2 = client("ec2", EAST, endpoint)
        self.hand_baked = ""
        self.report_file = bake.dir / "rebuild-report.json"
        self.config = tmp_path / "swarmforge.yaml"
        key = tmp_path / "swarm.key"
        key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
        key.chmod(0o600)
        # The bucket of bake.env: a bake by hand and a rebuild share the cluster's lock.
        self.config.write_text(json.dumps({"swarmforge": {  # JSON is YAML
            "target": "aws", "cluster": self.cluster, "region": EAST,
            "state_dir": str(bake.state_dir), "aws_endpoint": endpoint,
            "state_bucket": bake.env["INVOKE_SWARMFORGE_STATE_BUCKET"],
            "state_endpoint": endpoint, "key_name": "swarm", "ssh_key": str(key),
            "allowed_ssh_cidrs": ["203.0.113.7/32"]}}))

    def packer_will_make(self, base: str, docker: str = "27.*") -> str:
        """The AMI the next `packer build` makes: built on ``base``, tagged as Packer tags it."""
        ami_id = packer_made_ami(self.endpoint, EAST, self.cluster)
        self.ec2.create_tags(Resources=[ami_id], Tags=[{"Key": BASE_TAG, "Value": base},
                                                       {"Key": DOCKER_TAG, "Value": docker}])
        self.bake.replay("amazon-single-region", {EAST: ami_id})
        return ami_id

    def run(self, *flags: str) -> subprocess.CompletedProcess[str]:
        return invoke("-f", str(self.config), "rebuild", *flags, state_dir=self.bake.state_dir,
                      env=self.bake.env, timeout=120)

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads(self.report_file.read_text())
        return report

    def builds(self) -> int:
        return sum(call["argv"][0] == "build" for call in self.bake.calls())

    def tags(self, ami_id: str) -> dict[str, str]:
        image = self.ec2.describe_images(ImageIds=[ami_id])["Images"][0]
        return {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])}

    def current(self) -> str:
        ssm = client("ssm", EAST, self.endpoint)
        value: str = ssm.get_parameter(Name=f"/swarmforge/{self.cluster}/ami-id")["Parameter"]["Value"]
        return value

    def exists(self, ami_id: str) -> bool:
        return bool(self.ec2.describe_images(ImageIds=[ami_id])["Images"])


@pytest.fixture
def rebuild(bake: Bake, endpoint: str, tmp_path: Path) -> Rebuild:
    return Rebuild(bake, endpoint, tmp_path)


@pytest.fixture
def bake(tmp_path: Path, endpoint: str) -> Bake:
    return Bake(tmp_path, endpoint)


@pytest.fixture
def first(rebuild: Rebuild) -> str:
    """A cluster baked once by hand (`invoke bake`), then rebuilt: the hand-made AMI records
    no digest of packer/ and scripts/, so the rebuild bakes. Returns the rebuilt AMI."""
    base = publish_ubuntu(EAST)
    rebuild.hand_baked = rebuild.packer_will_make(base)
    assert rebuild.bake.run("--target", "aws", "--region", EAST).returncode == 0
    ami = rebuild.packer_will_make(base)
    done = rebuild.run()
    assert done.returncode == EXIT_REBUILT, done.stderr
    return ami


# --- the aws path, up to the roll ---------------------------------------------------------------


def test_first_rebuild_bakes_stamps_and_reports(rebuild: Rebuild, first: str) -> None:
    report = rebuild.report()
    assert report["result"] == "rebuilt" and report["exit_code"] == EXIT_REBUILT
    assert report["reasons"] == [f"{rebuild.hand_baked} records no digest of packer/ and "
                                 "scripts/ (baked outside rebuild)"]
    assert report["previous_image"] == rebuild.hand_baked
    assert report["baked"] == {EAST: first}
    assert rebuild.current() == first
    assert rebuild.builds() == 2  # the bake by hand, the rebuild's
    assert INPUTS_TAG not in rebuild.tags(rebuild.hand_baked)
    digest = rebuild.tags(first)[INPUTS_TAG]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert report["rolled"] == [] and report["error"] is None
    assert report["notes"] == ["the cluster has no nodes: nothing to roll; `invoke apply` will "
                               "launch nodes from the current image"]


def test_nothing_changed_bakes_nothing_and_exits_0(rebuild: Rebuild, first: str) -> None:
    again = rebuild.run()

    assert again.returncode == EXIT_NOTHING_TO_DO, again.stderr
    assert rebuild.builds() == 2  # no third `packer build`
    assert rebuild.current() == first
    report = rebuild.report()
    assert report["result"] == "nothing-to-do" and report["reasons"] == []
    assert {check["name"]: check["changed"] for check in report["checks"]} == {
        "base": False, "docker": False, "inputs": False, "age": False}
    assert report["baked"] == {} and report["pruned"] == []
    assert f"rebuild of cluster '{rebuild.cluster}' on aws: nothing-to-do" in again.stdout
    assert f"report: {rebuild.report_file}" in again.stdout


def test_a_newer_ubuntu_base_bakes_and_prunes(rebuild: Rebuild, first: str) -> None:
    old_base = rebuild.tags(first)[BASE_TAG]
    newer = publish_ubuntu(EAST)
    publish_ubuntu(EAST, owner="111122223333")  # newer still, but not Canonical's
    publish_ubuntu(EAST, arch="arm64")  # newer still, but not amd64
    publish_ubuntu(EAST, release="jammy-22.04")  # newer still, but another release
    second = rebuild.packer_will_make(newer)

    done = rebuild.run("--keep", "1")

    assert done.returncode == EXIT_REBUILT, done.stderr
    report = rebuild.report()
    assert report["reasons"] == [f"newer base image {newer} ({first} was built on {old_base})"]
    assert report["baked"] == {EAST: second} and rebuild.current() == second
    assert report["pruned"] == [first, rebuild.hand_baked]  # newest first; the current one stays
    assert not rebuild.exists(first) and not rebuild.exists(rebuild.hand_baked)
    assert rebuild.run().returncode == EXIT_NOTHING_TO_DO


def test_inputs_baked_from_other_trees_bake_again(rebuild: Rebuild, first: str) -> None:
    # As if packer/ or scripts/ had changed since: the AMI's digest is not today's.
    other = "sha256:" + "0" * 64
    rebuild.ec2.create_tags(Resources=[first], Tags=[{"Key": INPUTS_TAG, "Value": other}])
    second = rebuild.packer_will_make(rebuild.tags(first)[BASE_TAG])

    done = rebuild.run()

    assert done.returncode == EXIT_REBUILT, done.stderr
    (reason,) = rebuild.report()["reasons"]
    assert reason.startswith(f"packer/ or scripts/ changed since {first} was baked (000000000000 -> ")
    assert rebuild.current() == second
    assert rebuild.tags(second)[INPUTS_TAG] not in ("", other)
    assert rebuild.run().returncode == EXIT_NOTHING_TO_DO  # today's trees, stamped on the new AMI


def test_force_bakes_although_nothing_changed(rebuild: Rebuild, first: str) -> None:
    second = rebuild.packer_will_make(rebuild.tags(first)[BASE_TAG])

    done = rebuild.run("--force")

    assert done.returncode == EXIT_REBUILT, done.stderr
    assert rebuild.report()["reasons"] == ["--force"]
    assert rebuild.builds() == 3 and rebuild.current() == second


def test_another_docker_spec_bakes_with_it(rebuild: Rebuild, first: str) -> None:
    rebuild.packer_will_make(rebuild.tags(first)[BASE_TAG], docker="~=27.3")

    done = rebuild.run("--docker-version", "~=27.3")

    assert done.returncode == EXIT_REBUILT, done.stderr
    assert rebuild.report()["reasons"] == [f"a bake now pins Docker ~=27.3; {first} has 27.*"]
    values = var_file_values(rebuild.bake.dir / "bake.pkrvars.hcl")
    assert (values["docker_version"], values["docker_version_min"]) == ("27", "27.3")
    # Without the flag, the next run keeps the spec the image now has.
    assert rebuild.run().returncode == EXIT_NOTHING_TO_DO


# --- refusals and failures: nothing built, the report says why -----------------------------------


def test_an_unfinished_roll_from_another_machine_is_finished_before_anything(
        rebuild: Rebuild, tmp_path: Path) -> None:
    # A CI runner's roll died half-way; its journal is in S3 beside the state. This machine
    # (another state dir) has never seen the cluster.
    other = json.loads(rebuild.config.read_text())["swarmforge"]
    other["state_dir"] = str(tmp_path / "other-runner")
    other["allowed_ssh_cidrs"] = tuple(other["allowed_ssh_cidrs"])
    operations = AwsTarget(replace(Settings(), **other)).operation_store()
    with operations.exclusive("invoke roll"):
        operations.journal().begin(RollRecord(
            summary="roll 2 node(s)", resume="invoke roll --yes", max_unavailable=1,
            pending=["aws_instance.swarm_worker[0]", "aws_instance.swarm_worker[1]"]))
    rebuild.packer_will_make(publish_ubuntu(EAST))

    resumed = rebuild.run()

    # It carries the roll on first. Here it gets as far as the aws target's checks (moto has
    # no key pair and no instances: the sandbox test finishes a roll); nothing is baked
    # before the roll is done.
    assert "finishing the unfinished roll (roll 2 node(s), started " in resumed.stderr
    assert "key pair" in resumed.stderr and resumed.returncode == 2
    assert rebuild.bake.calls() == []
    report = rebuild.report()
    assert (report["result"], report["exit_code"], report["baked"]) == ("failed", 2, {})
    assert report["resumed"]["operation"] == "roll" and report["resumed"]["finished"] is False
    assert operations.journal().load() is not None  # still there for the next run


def test_a_failed_bake_records_nothing_and_reports_the_failure(rebuild: Rebuild) -> None:
    publish_ubuntu(EAST)
    rebuild.bake.replay("amazon-failed")

    failed = rebuild.run()

    assert failed.returncode == 1
    assert "packer build failed (exit 1)" in failed.stderr
    assert f"rebuild of cluster '{rebuild.cluster}' failed; report: {rebuild.report_file}" \
        in failed.stderr
    report = rebuild.report()
    assert (report["result"], report["exit_code"], report["baked"]) == ("failed", 1, {})
    assert "packer build failed" in report["error"] and report["finished"]
    assert not rebuild.bake.record_file.exists()


def test_bad_inputs_stop_before_packer_runs(rebuild: Rebuild) -> None:
    rebuild.packer_will_make(publish_ubuntu(EAST))

    refused = rebuild.run("--docker-version", "latest")
    assert refused.returncode == 2
    assert "docker_version: 'latest': not a version specifier" in refused.stderr

    rebuild.config.write_text(rebuild.config.read_text().replace(
        '"key_name"', '"ami_id": "ami-0123456789abcdef0", "key_name"'))
    refused = rebuild.run()
    assert refused.returncode == 2
    assert "ami_id: ami-0123456789abcdef0 is pinned" in refused.stderr
    assert rebuild.bake.calls() == []


# --- what is compared ----------------------------------------------------------------------------


def test_packer_looks_for_the_base_ami_as_rebuild_does() -> None:
    """packer/sources.pkr.hcl's source_ami_filter and the base tag, against ami_provenance."""
    sources, variables = (hcl(REPO / "packer" / name)
                          for name in ("sources.pkr.hcl", "variables.pkr.hcl"))
    source = sources["source"][0]["amazon-ebs"]["ubuntu_docker"]
    search = source["source_ami_filter"][0]
    release = next(v["ubuntu_release"]["default"] for v in variables["variable"]
                   if "ubuntu_release" in v)
    assert release == UBUNTU_RELEASE
    filters = dict(search["filters"])
    assert filters.pop("name").replace("${var.ubuntu_release}", "{release}") == UBUNTU_NAME
    assert [{"Name": k, "Values": [v]} for k, v in sorted(filters.items())] == base_filters()[1:]
    # Canonical's account of the build region's partition, the commercial one by default.
    owner = next(v["ubuntu_owner"] for v in variables["variable"] if "ubuntu_owner" in v)
    assert search["owners"] == ["${var.ubuntu_owner}"] and owner["default"] == CANONICAL
    assert search["most_recent"] is True
    assert sources["locals"][0]["image_tags"][BASE_TAG] == "{{ .SourceAMI }}"
    assert source["tags"] == "${local.image_tags}"


def hcl(path: Path) -> Any:
    """An HCL file as python-hcl2 reads it, string keys and values unquoted."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {plain(k): plain(v) for k, v in value.items() if not k.startswith("__")}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, str) and len(value) > 1 and value[0] == value[-1] == '"':
            return json.loads(value)
        return value

    with path.open() as handle:
        return plain(hcl2.load(handle))


def test_the_inputs_digest_follows_content_paths_and_modes(tmp_path: Path) -> None:
    def tree(root: Path) -> Path:
        (root / "packer").mkdir(parents=True)
        (root / "scripts").mkdir()
        (root / "packer" / "build.pkr.hcl").write_text("build {}\n")
        (root / "scripts" / "install.sh").write_text("#!/bin/sh\n")
        return root

    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    (b / "scripts" / "__pycache__").mkdir()
    (b / "scripts" / "__pycache__" / "x.pyc").write_bytes(b"cache")
    assert inputs_digest(a) == inputs_digest(b)  # caches are no input
    seen = {inputs_digest(a)}
    for change in (lambda: (b / "scripts" / "install.sh").chmod(0o755),
                   lambda: (b / "packer" / "build.pkr.hcl").write_text("build { }\n"),
                   lambda: (b / "packer" / "build.pkr.hcl").rename(b / "packer" / "b.pkr.hcl"),
                   lambda: (b / "scripts" / "new.sh").write_text("")):
        change()
        assert inputs_digest(b) not in seen  # each change is seen, none undoes another
        seen.add(inputs_digest(b))
    before = inputs_digest(b)
    (b / "other").mkdir()  # outside the trees: no change
    (b / "other" / "notes.txt").write_text("x\n")
    assert inputs_digest(b) == before


def test_the_inputs_digest_of_the_repo_sees_packer_and_scripts_only(tmp_path: Path) -> None:
    """The real trees, copied: the digest is the repo's wherever it lies, and only an
    edit under packer/ or scripts/ changes it."""
    copy = tmp_path / "repo"
    for tree in ("packer", "scripts", "terraform"):
        shutil.copytree(REPO / tree, copy / tree, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "README.md").write_text((REPO / "README.md").read_text())
    original = inputs_digest(copy)
    assert original == inputs_digest(REPO)

    (copy / "README.md").write_text("edited\n")
    (copy / "terraform" / "aws" / "main.tf").write_text("# edited\n")
    assert inputs_digest(copy) == original  # outside packer/ and scripts/
    for inside in (copy / "packer" / "variables.pkr.hcl", copy / "scripts" / "install-docker.sh"):
        kept = inside.read_bytes()
        inside.write_bytes(kept + b"\n# edited\n")
        assert inputs_digest(copy) != original, inside
        inside.write_bytes(kept)
        assert inputs_digest(copy) == original, inside


def test_an_old_image_is_baked_again_for_newer_docker_releases() -> None:
    facts = ImageFacts("ami-0123456789abcdef0", created=NOW - timedelta(days=31),
                       docker_spec="27.*", inputs_digest="sha256:1", base="ami-0aaaaaaaaaaaaaaa1")
    options = RebuildOptions()

    (age,) = [c for c in decide(facts, facts.base, "27.*", "sha256:1", options, NOW)
              if c.changed]
    assert age.name == "age" and age.detail.startswith("ami-0123456789abcdef0 is 31 days old (max 30)")
    assert not [c for c in decide(replace(facts, created=NOW - timedelta(days=29)), facts.base,
                                  "27.*", "sha256:1", options, NOW) if c.changed]
    never = replace(options, max_age_days=0)
    assert not [c for c in decide(facts, facts.base, "27.*", "sha256:1", never, NOW) if c.changed]
    assert [c.name for c in decide(replace(facts, base=""), None, "27.*", "sha256:1", never, NOW)] \
        == ["docker", "inputs"]  # a target without base images has no base check


def test_the_report_is_json_an_operator_can_read(rebuild: Rebuild, first: str) -> None:
    rebuild.run()
    report = rebuild.report()
    assert set(report) == {"cluster", "target", "started", "finished", "result", "exit_code",
                           "checks", "reasons", "previous_image", "baked", "rolled", "pruned",
                           "notes", "error", "resumed"}
    assert report["resumed"] is None  # no unfinished operation was found to finish first
    assert report["previous_image"] == first and report["target"] == "aws"
    assert datetime.fromisoformat(report["finished"]) >= datetime.fromisoformat(report["started"])
    assert os.stat(rebuild.report_file).st_size > 0
