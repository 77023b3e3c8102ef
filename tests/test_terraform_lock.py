"""A Terraform state lock left by a killed run (a `.tflock` beside the state in S3): the next
Terraform command fails with one line naming the lock and the command that clears it, and
`invoke unlock --terraform-lock ID` clears it. Real terraform, its S3 backend (`use_lockfile`)
against moto's server, the cluster's real workspace (terraform/local, no sandbox needed)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from swarmforge.operation import BusyError
from swarmforge.settings import Settings
from swarmforge.targets.aws import client
from swarmforge.targets.local.target import LocalTarget
from swarmforge.terraform import StateLockedError, TerraformError
from swarmforge.unlock import terraform_unlock
from swarmforge.workspace import initialised_terraform
from tests.conftest import invoke, unique_cluster

REGION = "eu-west-1"
LOCK_ID = str(uuid.uuid4())


def _lock_info(path: str) -> bytes:
    """What Terraform writes into the .tflock while it holds the state (its LockInfo)."""
    return json.dumps({"ID": LOCK_ID, "Operation": "OperationTypeApply", "Info": "",
                       "Who": "runner@ci-7", "Version": "1.11.4",
                       "Created": "2026-12-05T18:00:00.123456Z", "Path": path}).encode()


@pytest.fixture
def settings(endpoint: str, tmp_path: Path) -> Settings:
    bucket = f"state-{uuid.uuid4().hex[:12]}"
    client("s3", REGION, endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    return replace(Settings(), cluster=unique_cluster("tfl"), state_dir=str(tmp_path),
                   state_bucket=bucket, state_region=REGION, state_endpoint=endpoint)


def test_a_left_state_lock_is_one_line_with_the_command_that_clears_it(
        settings: Settings, endpoint: str) -> None:
    tf = initialised_terraform(settings, LocalTarget.config_dir, LocalTarget.mirrored_providers,
                               lambda line: None)
    if tf.version().release < (1, 10):
        pytest.skip(f"{tf.binary} predates use_lockfile (Terraform 1.10)")
    s3 = client("s3", REGION, endpoint)
    lock_key = f"{settings.state_key}.tflock"
    s3.put_object(Bucket=settings.state_bucket, Key=lock_key,
                  Body=_lock_info(f"{settings.state_bucket}/{settings.state_key}"))
    tf.lock_timeout = "1s"  # Terraform waits this long for the lock before it gives up

    with pytest.raises(StateLockedError) as locked:
        tf.plan({}, {})

    message = str(locked.value)
    assert "\n" not in message
    assert message == (
        f"terraform plan failed: Terraform's state is locked (lock ID {LOCK_ID}, "
        "OperationTypeApply by runner@ci-7 since 2026-12-05 18:00:00.123456 +0000 UTC); if no "
        f"Terraform run is still going, clear it: invoke unlock --terraform-lock {LOCK_ID} "
        f"--cluster {settings.cluster} --target local")
    assert locked.value.exit_code == 4

    env = {"INVOKE_SWARMFORGE_STATE_BUCKET": str(settings.state_bucket),
           "INVOKE_SWARMFORGE_STATE_REGION": REGION, "INVOKE_SWARMFORGE_STATE_ENDPOINT": endpoint}
    state_dir = Path(settings.state_dir)
    unasked = invoke("unlock", "--terraform-lock", LOCK_ID, "--cluster", settings.cluster,
                     state_dir=state_dir, env=env)
    assert unasked.returncode == 1 and "nothing unlocked" in unasked.stderr
    assert s3.list_objects_v2(Bucket=settings.state_bucket, Prefix=lock_key).get("KeyCount") == 1

    cleared = invoke("unlock", "--terraform-lock", LOCK_ID, "--cluster", settings.cluster,
                     "--yes", state_dir=state_dir, env=env)

    assert cleared.returncode == 0, cleared.stderr
    assert f"Terraform's state lock {LOCK_ID} removed" in cleared.stdout
    assert s3.list_objects_v2(Bucket=settings.state_bucket, Prefix=lock_key).get("KeyCount") == 0
    # Terraform goes on: the same command now gets past the lock (to the variables it lacks).
    with pytest.raises(TerraformError) as after:
        tf.plan({}, {})
    assert not isinstance(after.value, StateLockedError) and "No value for required variable" \
        in after.value.output


def test_terraform_lock_is_never_cleared_beneath_a_running_operation(settings: Settings) -> None:
    operations = LocalTarget(settings).operation_store()
    with operations.exclusive("invoke apply"), pytest.raises(BusyError, match="invoke apply"):
        terraform_unlock(settings, LOCK_ID)


def test_a_lock_id_that_reads_as_a_flag_is_refused(settings: Settings) -> None:
    with pytest.raises(Exception, match="is not a lock ID"):
        terraform_unlock(settings, "-force")
