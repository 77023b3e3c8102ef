"""The state bucket and lock table, against moto's server on loopback (real HTTP, real boto3)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.authorization import enable_iam_authentication

from swarmforge.errors import (
    StateBackendError,
    StateBucketForbiddenError,
    StateBucketRegionError,
)
from swarmforge.targets.aws import client
from swarmforge.targets.aws.state_bucket import (
    deny_insecure_transport_statement,
    ensure_lock_table,
    ensure_state_bucket,
)

REGION = "eu-west-1"  # not us-east-1, so that LocationConstraint matters


@pytest.fixture
def s3(endpoint: str) -> Any:
    return client("s3", REGION, endpoint)


@pytest.fixture
def bucket() -> str:
    return f"swarmforge-state-{uuid.uuid4().hex[:12]}"


def test_a_new_bucket_is_created_with_every_setting(s3: Any, bucket: str) -> None:
    report = ensure_state_bucket(s3, bucket, REGION)

    assert report.created
    assert set(report.changed) == {
        "versioning",
        "encryption",
        "public-access-block",
        "tls-only-policy",
    }
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statements == [deny_insecure_transport_statement(bucket)]
    assert statements[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_policy_refuses_objects_over_plain_http(s3: Any, bucket: str) -> None:
    # moto evaluates bucket policies, and this server speaks plain HTTP only.
    ensure_state_bucket(s3, bucket, REGION)

    with pytest.raises(ClientError, match="Forbidden"):
        s3.put_object(Bucket=bucket, Key="terraform.tfstate", Body=b"{}")


def test_a_second_run_changes_nothing(s3: Any, bucket: str) -> None:
    ensure_state_bucket(s3, bucket, REGION)
    policy_before = s3.get_bucket_policy(Bucket=bucket)["Policy"]

    report = ensure_state_bucket(s3, bucket, REGION)

    assert report.unchanged
    assert not report.created
    assert report.changed == ()
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == policy_before


def test_settings_changed_by_hand_are_put_back(s3: Any, bucket: str) -> None:
    ensure_state_bucket(s3, bucket, REGION)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.delete_public_access_block(Bucket=bucket)

    report = ensure_state_bucket(s3, bucket, REGION)

    assert not report.created
    assert report.changed == ("versioning", "public-access-block")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert ensure_state_bucket(s3, bucket, REGION).unchanged


def test_stricter_settings_and_other_policy_statements_are_kept(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    kms = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/state"}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": kms}]},
    )
    audit = {
        "Sid": "AuditRead",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [audit]})
    )

    report = ensure_state_bucket(s3, bucket, REGION)

    assert not report.created
    assert "encryption" not in report.changed
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert statements == [audit, deny_insecure_transport_statement(bucket)]


def test_a_bucket_in_another_region_is_refused(endpoint: str, s3: Any, bucket: str) -> None:
    ensure_state_bucket(s3, bucket, REGION)

    with pytest.raises(StateBucketRegionError, match=f"is in {REGION}, not us-east-1") as caught:
        ensure_state_bucket(client("s3", "us-east-1", endpoint), bucket, "us-east-1")

    assert (caught.value.expected_region, caught.value.actual_region) == ("us-east-1", REGION)


def test_a_bucket_we_may_not_read_is_refused(endpoint: str, s3: Any, bucket: str) -> None:
    ensure_state_bucket(s3, bucket, REGION)
    stranger = _credentials_without_permissions(endpoint)

    # moto checks IAM permissions only when asked to: then head_bucket answers 403,
    # as S3 does for a bucket of another account.
    with enable_iam_authentication(), pytest.raises(StateBucketForbiddenError, match="403"):
        ensure_state_bucket(stranger, bucket, REGION)


def test_a_client_for_another_region_is_refused(endpoint: str, bucket: str) -> None:
    with pytest.raises(StateBackendError, match="client is for us-east-1"):
        ensure_state_bucket(client("s3", "us-east-1", endpoint), bucket, REGION)


def test_the_lock_table_is_created_once(endpoint: str) -> None:
    dynamodb = client("dynamodb", REGION, endpoint)
    table = f"swarmforge-locks-{uuid.uuid4().hex[:8]}"

    first = ensure_lock_table(dynamodb, table, REGION)
    second = ensure_lock_table(dynamodb, table, REGION)

    assert (first.created, second.created) == (True, False)
    description = dynamodb.describe_table(TableName=table)["Table"]
    assert description["KeySchema"] == [{"AttributeName": "LockID", "KeyType": "HASH"}]
    assert description["AttributeDefinitions"] == [
        {"AttributeName": "LockID", "AttributeType": "S"}
    ]
    assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"


def test_a_table_with_another_key_is_refused(endpoint: str) -> None:
    dynamodb = client("dynamodb", REGION, endpoint)
    table = f"swarmforge-other-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )

    with pytest.raises(StateBackendError, match="LockID"):
        ensure_lock_table(dynamodb, table, REGION)


def _credentials_without_permissions(endpoint: str) -> Any:
    iam = client("iam", "us-east-1", endpoint)
    user = f"stranger-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    session = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )
    return session.client("s3", region_name=REGION, endpoint_url=endpoint)


def test_the_tls_only_statement_names_the_bucket_in_its_own_partition() -> None:
    from swarmforge.targets.aws import partition_of

    assert [partition_of(r) for r in ("eu-west-1", "cn-north-1", "us-gov-west-1")] == [
        "aws", "aws-cn", "aws-us-gov"]
    china = deny_insecure_transport_statement("state", partition_of("cn-north-1"))
    assert china["Resource"] == ["arn:aws-cn:s3:::state", "arn:aws-cn:s3:::state/*"]
