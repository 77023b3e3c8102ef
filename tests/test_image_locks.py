"""Bake and prune hold the cluster's lock (issue 17, point 11): a prune during a bake, a
roll or a replace-node could remove the image a node is about to launch from.

On aws the lock is the lease in the state bucket (moto's server, real boto3, the real
`invoke` CLI in a child process); on local the flock in the cluster's dir. Each test
holds the lock from this process, as another run would, and the task run beside it
must stop at once with the one busy line, having changed nothing; once the lock is
free the same command does its work, so the lock, not anything else, stopped it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarmforge.operation import LocalOperations, RollRecord
from swarmforge.settings import Settings, load_settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.amis import ClusterAmis
from swarmforge.targets.aws.lease import LOCK_SUFFIX, S3Operations
from swarmforge.targets.local.image_store import LocalImageStore
from tests.conftest import invoke, unique_cluster
from tests.test_ami_tasks import cluster_env, cluster_flags
from tests.test_amis import Baker
from tests.test_bake import EAST, Bake, packer_made_ami
from tests.test_local_images import record, stored
from tests.test_rebuild import Rebuild


def busy_line(cluster: str, command: str) -> str:
    return f"swarmforge: cluster {cluster!r} is busy: {command} by "


# --- aws --------------------------------------------------------------------------------------


@pytest.fixture
def settings(endpoint: str, tmp_path: Path) -> Settings:
    return load_settings({}, {"cluster": unique_cluster("lockimg"), "region": EAST,
                              "state_dir": str(tmp_path / "state"), "aws_endpoint": endpoint,
                              **cluster_flags(endpoint, tmp_path)})


def lock_of(settings: Settings) -> S3Operations:
    """The cluster's lock and journal, as another run (another machine) sees them."""
    return S3Operations(client("s3", EAST, settings.state_endpoint), str(settings.state_bucket),
                        settings.state_key, settings.cluster)


def lock_left(settings: Settings) -> bool:
    listed = client("s3", EAST, settings.state_endpoint).list_objects_v2(
        Bucket=str(settings.state_bucket), Prefix=settings.state_key + LOCK_SUFFIX)
    return bool(listed.get("Contents"))


def prune(settings: Settings) -> Any:
    return invoke("prune-amis", "--keep", "1", "--yes", "--cluster", settings.cluster,
                  "--region", EAST, state_dir=Path(settings.state_dir), timeout=120,
                  env={"INVOKE_SWARMFORGE_AWS_ENDPOINT": str(settings.aws_endpoint),
                       "INVOKE_SWARMFORGE_TARGET": "aws", **cluster_env(settings)})


@pytest.fixture
def three(settings: Settings) -> list[str]:
    """Three AMIs of the cluster, oldest first, the newest recorded as current."""
    baker = Baker(client("ec2", EAST, settings.aws_endpoint), settings.cluster)
    amis = [baker.bake() for _ in range(3)]  # one baker: its names order same-second AMIs
    ClusterAmis.of(settings).record_current(amis[-1])
    return amis


def existing(settings: Settings, amis: list[str]) -> list[str]:
    ec2 = client("ec2", EAST, settings.aws_endpoint)
    return [image["ImageId"] for image in ec2.describe_images(ImageIds=amis)["Images"]]


def test_a_prune_while_a_roll_holds_the_cluster_is_refused_at_once(settings: Settings,
                                                                   three: list[str]) -> None:
    with lock_of(settings).exclusive("invoke roll"):
        refused = prune(settings)

    assert refused.returncode == 4, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith(busy_line(settings.cluster, "invoke roll"))
    assert sorted(existing(settings, three)) == sorted(three)  # nothing deregistered
    # Free again: the same command prunes, and leaves no lock behind.
    done = prune(settings)
    assert done.returncode == 0, done.stderr
    assert existing(settings, three) == [three[-1]]
    assert not lock_left(settings)


def test_a_prune_waits_for_an_unfinished_roll(settings: Settings, three: list[str]) -> None:
    # A roll killed half-way (lock released, journal left): its resume launches nodes from
    # the image chosen then, perhaps one no node holds yet and SSM does not record (--ami).
    operations = lock_of(settings)
    roll = RollRecord(summary="1 node", resume="invoke roll --yes", max_unavailable=1,
                      pending=["w0"])
    with operations.exclusive("invoke roll"):
        operations.journal().begin(roll)

    refused = prune(settings)

    assert refused.returncode == 4, refused.stderr
    assert refused.stderr.strip().splitlines() == [
        f"swarmforge: cluster {settings.cluster!r} has an unfinished roll (1 node, started "
        f"{roll.started}); finish it first: invoke roll --yes"]
    assert sorted(existing(settings, three)) == sorted(three)
    assert not lock_left(settings)


def test_a_bake_while_the_cluster_is_held_builds_and_records_nothing(tmp_path: Path,
                                                                     endpoint: str) -> None:
    bake = Bake(tmp_path, endpoint)
    bake.replay("amazon-single-region", {EAST: packer_made_ami(endpoint, EAST, bake.cluster)})
    held = S3Operations(client("s3", EAST, endpoint), bake.env["INVOKE_SWARMFORGE_STATE_BUCKET"],
                        f"swarmforge/{bake.cluster}/terraform.tfstate", bake.cluster)

    with held.exclusive("invoke prune-amis"):
        refused = bake.run("--region", EAST)

    assert refused.returncode == 4, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        busy_line(bake.cluster, "invoke prune-amis"))
    assert [call["argv"][0] for call in bake.calls()] == ["init", "validate"]  # no build
    assert bake.recorded_in_ssm(EAST) is None and not bake.record_file.exists()
    done = bake.run("--region", EAST)  # free again: the same bake builds and records
    assert done.returncode == 0, done.stderr
    assert bake.recorded_in_ssm(EAST) is not None


def test_a_rebuild_while_the_cluster_is_held_bakes_nothing(tmp_path: Path, endpoint: str) -> None:
    rebuild = Rebuild(Bake(tmp_path, endpoint), endpoint, tmp_path)
    held = S3Operations(client("s3", EAST, endpoint),
                        rebuild.bake.env["INVOKE_SWARMFORGE_STATE_BUCKET"],
                        f"swarmforge/{rebuild.cluster}/terraform.tfstate", rebuild.cluster)

    with held.exclusive("invoke roll"):
        refused = rebuild.run("--force")

    assert refused.returncode == 4, refused.stderr
    assert rebuild.builds() == 0
    report = rebuild.report()
    assert report["error"].startswith(f"cluster {rebuild.cluster!r} is busy: invoke roll by ")
    assert report["baked"] == {} and report["pruned"] == []


# --- local ------------------------------------------------------------------------------------


def test_a_local_prune_while_the_cluster_is_held_is_refused(tmp_path: Path) -> None:
    cluster = unique_cluster("lockimg")
    local = load_settings({}, {"cluster": cluster, "state_dir": str(tmp_path / "state")})
    store = LocalImageStore.of(local)
    old = stored(store, cluster, docker="1", created="2026-01-01T00:00:00+00:00")
    record(local, stored(store, cluster, docker="2", created="2026-02-01T00:00:00+00:00"))

    def run() -> Any:
        return invoke("prune-amis", "--target", "local", "--cluster", cluster, "--keep", "1",
                      "--yes", state_dir=tmp_path / "state")

    with LocalOperations(local.cluster_dir, cluster).exclusive("invoke roll"):
        refused = run()

    assert refused.returncode == 4, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith(busy_line(cluster, "invoke roll"))
    assert old.path.exists()
    done = run()
    assert done.returncode == 0, done.stderr
    assert f"removed {old.id}" in done.stdout and not old.path.exists()


def test_a_local_bake_while_the_cluster_is_held_prepares_nothing(tmp_path: Path) -> None:
    cluster = unique_cluster("lockimg")
    local = load_settings({}, {"cluster": cluster, "state_dir": str(tmp_path / "state")})

    with LocalOperations(local.cluster_dir, cluster).exclusive("invoke apply"):
        refused = invoke("bake", "--target", "local", "--cluster", cluster,
                         "--docker-version", "27.*", state_dir=tmp_path / "state")

    assert refused.returncode == 4, refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(busy_line(cluster, "invoke apply"))
    assert not (local.build_dir / "local.pkrvars.hcl").exists()  # nothing rendered, no sandbox
