"""The local pipeline with its Terraform state in S3 (moto's server on loopback, real backend)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from swarmforge.targets.aws import client
from swarmforge.targets.aws.state_bucket import ensure_state_bucket
from tests.conftest import invoke, unique_cluster
from tests.leaks import TOKEN

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

REGION = "eu-west-1"
BUCKET = "swarmforge-test-state"


def test_a_local_cluster_keeps_its_state_in_the_bucket(endpoint: str, state_root: Path) -> None:
    s3 = client("s3", REGION, endpoint)
    ensure_state_bucket(s3, BUCKET, REGION)
    # The bucket policy denies plain HTTP, and moto's server speaks only HTTP.
    s3.delete_bucket_policy(Bucket=BUCKET)
    cluster = unique_cluster("sfs3")
    env = {"INVOKE_SWARMFORGE_STATE_BUCKET": BUCKET,
           "INVOKE_SWARMFORGE_STATE_REGION": REGION, "INVOKE_SWARMFORGE_STATE_ENDPOINT": endpoint}
    try:
        applied = invoke("apply", "--cluster", cluster, "--managers", "1", "--workers", "1",
                         state_dir=state_root, env=env)
        assert applied.returncode == 0, applied.stderr
        key = f"swarmforge/{cluster}/terraform.tfstate"
        state = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        addresses = {f"{r['type']}.{r['name']}" for r in json.loads(state)["resources"]}
        assert addresses == {"null_resource.swarm_manager", "null_resource.swarm_worker",
                             "null_resource.swarm_join"}
        assert not TOKEN.search(state) and b"SWMTKN" not in state
        # No local state beside the config (.terraform/ keeps only the backend's settings).
        assert not (state_root / cluster / "terraform" / "terraform.tfstate").exists()

        shown = invoke("status", "--cluster", cluster, "--json", state_dir=state_root, env=env)
        assert shown.returncode == 0 and json.loads(shown.stdout)["healthy"] is True
    finally:
        destroyed = invoke("destroy", "--cluster", cluster, "--yes", state_dir=state_root, env=env)
    assert destroyed.returncode == 0, destroyed.stderr
    after = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert after["resources"] == []
    assert os.path.exists(state_root) and not (state_root / cluster).exists()
