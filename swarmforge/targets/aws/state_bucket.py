"""The S3 bucket (and, for Terraform < 1.10, the DynamoDB table) that hold Terraform state.

``ensure_*`` functions are idempotent: they read each setting first and change
only what differs, so a second run changes nothing and its report says so.
Existing settings that are at least as strict as ours (a KMS key instead of
SSE-S3, other policy statements next to ours) are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from swarmforge.errors import (
    StateBackendError,
    StateBucketForbiddenError,
    StateBucketRegionError,
)
from swarmforge.targets.aws import partition_of

DENY_INSECURE_TRANSPORT_SID = "DenyInsecureTransport"
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
ENCRYPTION_ALGORITHMS = {"AES256", "aws:kms", "aws:kms:dsse"}
LOCK_TABLE_KEY = "LockID"  # the hash key Terraform's S3 backend writes


@dataclass(frozen=True)
class BucketReport:
    """What ``ensure_state_bucket`` found and did."""

    bucket: str
    region: str
    created: bool
    changed: tuple[str, ...]  # settings that had to be set, e.g. ("versioning",)

    @property
    def unchanged(self) -> bool:
        return not self.created and not self.changed


@dataclass(frozen=True)
class TableReport:
    """What ``ensure_lock_table`` found and did."""

    table: str
    region: str
    created: bool


def ensure_state_bucket(s3: Any, bucket: str, region: str) -> BucketReport:
    """Make ``bucket`` in ``region`` a private, versioned, encrypted, TLS-only state bucket."""
    _require_client_region(s3, region)
    created = _ensure_bucket_exists(s3, bucket, region)
    steps: dict[str, Callable[[Any, str], bool]] = {
        "versioning": _ensure_versioning,
        "encryption": _ensure_encryption,
        "public-access-block": _ensure_public_access_block,
        "tls-only-policy": lambda s3, bucket: _ensure_tls_only_policy(s3, bucket, region),
    }
    changed = tuple(name for name, step in steps.items() if step(s3, bucket))
    return BucketReport(bucket=bucket, region=region, created=created, changed=changed)


def ensure_lock_table(dynamodb: Any, table: str, region: str) -> TableReport:
    """Make the DynamoDB table Terraform < 1.10 locks state with (hash key ``LockID``)."""
    _require_client_region(dynamodb, region)
    try:
        description = dynamodb.describe_table(TableName=table)["Table"]
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        _create_lock_table(dynamodb, table)
        return TableReport(table=table, region=region, created=True)
    _check_lock_table_key(table, description)
    return TableReport(table=table, region=region, created=False)


# --- the bucket ----------------------------------------------------------------


def _ensure_bucket_exists(s3: Any, bucket: str, region: str) -> bool:
    """True when the bucket had to be created; an error when it is not ours to use."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = _error_code(error)
        if code in {"403", "AccessDenied", "Forbidden"}:
            raise _forbidden(bucket) from error
        if code in {"301", "PermanentRedirect"}:
            raise StateBucketRegionError(bucket, region, _region_from(error)) from error
        if code not in {"404", "NoSuchBucket", "NotFound"}:
            raise
        return _create_bucket(s3, bucket, region)
    _check_bucket_region(s3, bucket, region)
    return False


def _create_bucket(s3: Any, bucket: str, region: str) -> bool:
    # us-east-1 is the one region S3 refuses as an explicit LocationConstraint.
    location = (
        {}
        if region == "us-east-1"
        else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    )
    try:
        s3.create_bucket(Bucket=bucket, **location)
    except ClientError as error:
        if _error_code(error) == "BucketAlreadyExists":
            raise _forbidden(bucket) from error
        if _error_code(error) != "BucketAlreadyOwnedByYou":
            raise
        # Created by a concurrent run of ours: check it like any existing bucket.
        _check_bucket_region(s3, bucket, region)
        return False
    s3.get_waiter("bucket_exists").wait(Bucket=bucket)
    return True


def _check_bucket_region(s3: Any, bucket: str, region: str) -> None:
    constraint = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    # S3 reports us-east-1 as no constraint, and eu-west-1 as "EU" for old buckets.
    actual = {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(constraint, constraint)
    if actual != region:
        raise StateBucketRegionError(bucket, region, actual)


def _ensure_versioning(s3: Any, bucket: str) -> bool:
    """Versioning keeps every earlier state: the way back from a bad apply."""
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") == "Enabled":
        return False
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return True


def _ensure_encryption(s3: Any, bucket: str) -> bool:
    """State holds resource attributes in clear: encrypt at rest (SSE-S3 unless KMS is set)."""
    if _default_encryption(s3, bucket) in ENCRYPTION_ALGORITHMS:
        return False
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    return True


def _default_encryption(s3: Any, bucket: str) -> str | None:
    try:
        configuration = s3.get_bucket_encryption(Bucket=bucket)
    except ClientError as error:
        if _error_code(error) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        return None
    rules = configuration["ServerSideEncryptionConfiguration"]["Rules"]
    algorithms = [rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for rule in rules]
    return algorithms[0] if algorithms else None


def _ensure_public_access_block(s3: Any, bucket: str) -> bool:
    try:
        current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if _error_code(error) != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = {}
    if all(current.get(setting) is True for setting in PUBLIC_ACCESS_BLOCK):
        return False
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK)
    )
    return True


def _ensure_tls_only_policy(s3: Any, bucket: str, region: str) -> bool:
    """Deny every request over plain HTTP; statements others added are kept."""
    policy = _bucket_policy(s3, bucket)
    wanted = deny_insecure_transport_statement(bucket, partition_of(region))
    statements = [s for s in policy["Statement"] if s.get("Sid") != DENY_INSECURE_TRANSPORT_SID]
    if len(statements) < len(policy["Statement"]) and wanted in policy["Statement"]:
        return False
    policy["Statement"] = [*statements, wanted]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return True


def deny_insecure_transport_statement(bucket: str, partition: str = "aws") -> dict[str, Any]:
    """The bucket policy statement that refuses requests not made over TLS, in the ARNs of
    the bucket's partition (aws-cn in China, aws-us-gov in GovCloud)."""
    return {
        "Sid": DENY_INSECURE_TRANSPORT_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [f"arn:{partition}:s3:::{bucket}", f"arn:{partition}:s3:::{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def _bucket_policy(s3: Any, bucket: str) -> dict[str, Any]:
    try:
        policy: dict[str, Any] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError as error:
        if _error_code(error) != "NoSuchBucketPolicy":
            raise
        return {"Version": "2012-10-17", "Statement": []}
    if isinstance(policy.get("Statement"), dict):  # a single statement may be written bare
        policy["Statement"] = [policy["Statement"]]
    return policy


# --- the lock table ------------------------------------------------------------


def _create_lock_table(dynamodb: Any, table: str) -> None:
    # On demand: a lock is a few writes per apply, far below any provisioned minimum.
    dynamodb.create_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": LOCK_TABLE_KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": LOCK_TABLE_KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        SSESpecification={"Enabled": True},
    )
    dynamodb.get_waiter("table_exists").wait(TableName=table)


def _check_lock_table_key(table: str, description: dict[str, Any]) -> None:
    key_schema = description.get("KeySchema", [])
    if key_schema != [{"AttributeName": LOCK_TABLE_KEY, "KeyType": "HASH"}]:
        raise StateBackendError(
            table,
            f"DynamoDB table {table!r} exists but its key is {key_schema}: Terraform needs "
            f"a table whose only key is the string hash key {LOCK_TABLE_KEY!r}.",
        )


# --- helpers ---------------------------------------------------------------------


def _require_client_region(client: Any, region: str) -> None:
    # A client for another region would create or look up things in the wrong place.
    client_region = client.meta.region_name
    if client_region != region:
        raise StateBackendError(
            region, f"The AWS client is for {client_region}, but the state lives in {region}."
        )


def _forbidden(bucket: str) -> StateBucketForbiddenError:
    return StateBucketForbiddenError(
        bucket,
        f"State bucket {bucket!r} exists but this account cannot use it (403): bucket names "
        "are global, so another account may own it. Choose another name, or check the "
        "credentials' S3 permissions.",
    )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _region_from(error: ClientError) -> str:
    headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return str(headers.get("x-amz-bucket-region", "another region"))
