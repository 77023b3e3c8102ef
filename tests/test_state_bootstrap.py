"""`invoke state-bootstrap` through the real CLI, against moto's server (real HTTP, real boto3)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.core.authorization import enable_iam_authentication

from swarmforge.targets.aws import client
from swarmforge.targets.aws.state_bucket import deny_insecure_transport_statement
from tests.conftest import invoke

REGION = "eu-west-1"


@pytest.fixture
def s3(endpoint: str) -> Any:
    return client("s3", REGION, endpoint)


@pytest.fixture
def bucket() -> str:
    return f"swarmforge-boot-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bootstrap(endpoint: str, tmp_path: Path) -> Any:
    """Runs `invoke state-bootstrap ARGS` with moto as every AWS endpoint."""
    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        endpoints = {"INVOKE_SWARMFORGE_AWS_ENDPOINT": endpoint,
                     "INVOKE_SWARMFORGE_STATE_ENDPOINT": endpoint}
        return invoke("state-bootstrap", *args, state_dir=tmp_path, env={**endpoints, **env},
                      timeout=120)
    return run


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_bucket_is_created_once_and_a_second_run_changes_nothing(
        bootstrap: Any, s3: Any, bucket: str) -> None:
    first = bootstrap("--bucket", bucket, "--region", REGION, "--cluster", "prod")
    assert first.returncode == 0, first.stderr
    assert (f"state bucket {bucket!r} in {REGION} (account 123456789012): created: versioning, "
            "encryption, public-access-block, tls-only-policy") in first.stdout
    assert f"s3://{bucket}/swarmforge/prod/terraform.tfstate" in first.stdout

    # Read every setting back from S3.
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block[setting] is True for setting in (
        "BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"))
    policy = s3.get_bucket_policy(Bucket=bucket)["Policy"]
    assert json.loads(policy)["Statement"] == [deny_insecure_transport_statement(bucket)]

    second = bootstrap("--bucket", bucket, "--region", REGION)
    assert second.returncode == 0, second.stderr
    assert "found, every setting in place: nothing changed" in second.stdout
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == policy


def test_settings_come_from_the_config_and_one_turned_off_is_put_back(
        bootstrap: Any, s3: Any, bucket: str) -> None:
    config = {"INVOKE_SWARMFORGE_STATE_BUCKET": bucket, "INVOKE_SWARMFORGE_REGION": REGION}
    assert bootstrap(**config).returncode == 0
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})

    again = bootstrap(**config)

    assert again.returncode == 0, again.stderr
    assert f"state bucket {bucket!r} in {REGION}" in again.stdout
    assert "found; put back: versioning" in again.stdout
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_the_lock_table_is_created_once(bootstrap: Any, endpoint: str, bucket: str) -> None:
    table = f"swarmforge-locks-{uuid.uuid4().hex[:8]}"

    first = bootstrap("--bucket", bucket, "--region", REGION, "--lock-table", table)
    second = bootstrap("--bucket", bucket, "--region", REGION, "--lock-table", table)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert f"lock table {table!r}: created" in first.stdout
    assert f"lock table {table!r}: found: nothing changed" in second.stdout
    described = client("dynamodb", REGION, endpoint).describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "LockID", "KeyType": "HASH"}]


def test_a_bucket_in_another_region_is_refused(bootstrap: Any, s3: Any, bucket: str) -> None:
    assert bootstrap("--bucket", bucket, "--region", REGION).returncode == 0

    refused = bootstrap("--bucket", bucket, "--region", "us-east-1")

    assert refused.returncode == 1
    assert f"is in {REGION}, not us-east-1" in one_line_error(refused)
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION


def test_a_bucket_of_another_account_is_refused(bootstrap: Any, endpoint: str, s3: Any,
                                                bucket: str) -> None:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    stranger = _credentials_without_permissions(endpoint)

    # moto checks permissions only when asked to: then S3 answers 403, as for another account's.
    with enable_iam_authentication():
        refused = bootstrap("--bucket", bucket, "--region", REGION, **stranger)

    assert refused.returncode == 1
    assert "exists but this account cannot use it (403)" in one_line_error(refused)
    assert s3.get_bucket_versioning(Bucket=bucket).get("Status") is None  # left as it was


def test_no_bucket_name_is_a_config_error(bootstrap: Any) -> None:
    refused = bootstrap("--region", REGION)

    assert refused.returncode == 2
    assert one_line_error(refused) == (
        "swarmforge: state_bucket: name the bucket: --bucket NAME (or swarmforge.state_bucket)")


def test_no_credentials_is_a_clear_error_and_creates_nothing(bootstrap: Any, s3: Any,
                                                             bucket: str) -> None:
    without = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
               "AWS_EC2_METADATA_DISABLED": "true"}

    refused = bootstrap("--bucket", bucket, "--region", REGION, **without)

    assert refused.returncode == 2
    assert one_line_error(refused).startswith("swarmforge: AWS credentials: none found")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_every_flag_is_explained(tmp_path: Path) -> None:
    shown = invoke("--help", "state-bootstrap", state_dir=tmp_path)

    assert shown.returncode == 0, shown.stderr
    for flag in ("bucket", "region", "cluster", "lock-table"):
        assert re.search(rf"--{flag}=STRING +\S", shown.stdout), flag  # then its help text


def _credentials_without_permissions(endpoint: str) -> dict[str, str]:
    iam = boto3.session.Session().client("iam", region_name="us-east-1", endpoint_url=endpoint)
    user = f"stranger-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
