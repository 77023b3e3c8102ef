"""Backups kept in the cluster's state bucket, beside its state: ``swarmforge/<cluster>/backups/``.

Each object is encrypted at rest (SSE: the bucket's KMS key when it has one, else
AES256), and the bucket is versioned (state_bootstrap makes it so). Where the bucket
has object lock, each backup is retained in the bucket's mode for ``retain_days``.
Prune deletes the keys; on a versioned bucket the old versions stay until the
bucket's lifecycle expires them, and a locked one until its retention ends.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import ClientError

from swarmforge.backup_store import SUFFIX, BackupError, Manifest, Stored, manifest_of, newest_first


class S3Backups:
    def __init__(self, s3: Any, bucket: str, prefix: str, retain_days: int = 0) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = prefix  # ends with "/"
        self.retain_days = retain_days
        self.where = f"s3://{bucket}/{self.prefix}"

    def put(self, manifest: Manifest, archive: bytes) -> Stored:
        key = self.prefix + manifest.name
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=archive,
                           ContentType="application/x-tar", **self._encryption(),
                           **self._retention())
        return Stored(manifest.name, manifest, f"s3://{self.bucket}/{key}")

    def _encryption(self) -> dict[str, str]:
        """The bucket's KMS key if its default encryption names one, else AES256."""
        try:
            rules = self.s3.get_bucket_encryption(Bucket=self.bucket)[
                "ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError:
            rules = []
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            if default.get("SSEAlgorithm", "").startswith("aws:kms") and default.get("KMSMasterKeyID"):
                return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": default["KMSMasterKeyID"]}
        return {"ServerSideEncryption": "AES256"}

    def _retention(self) -> dict[str, Any]:
        """Object lock retention, where the bucket has object lock: its default mode."""
        try:
            config = self.s3.get_object_lock_configuration(Bucket=self.bucket)[
                "ObjectLockConfiguration"]
        except ClientError:
            return {}  # no object lock on this bucket
        if config.get("ObjectLockEnabled") != "Enabled":
            return {}
        default = config.get("Rule", {}).get("DefaultRetention", {})
        days = self.retain_days or int(default.get("Days") or 0) or 7
        until = datetime.now(timezone.utc) + timedelta(days=days)
        return {"ObjectLockMode": default.get("Mode", "GOVERNANCE"),
                "ObjectLockRetainUntilDate": until}

    def backups(self) -> list[Stored]:
        found = []
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                 Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix):]
                if name.endswith(SUFFIX) and "/" not in name:
                    found.append(Stored(name, manifest_of(self.get(name)),
                                        f"s3://{self.bucket}/{item['Key']}"))
        return newest_first(found)[::-1]

    def get(self, name: str) -> bytes:
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BackupError(f"no backup {name!r} in {self.where}") from None
            raise
        return body

    def prune(self, keep: int) -> list[str]:
        removed = []
        for old in newest_first(self.backups())[keep:]:
            self.s3.delete_object(Bucket=self.bucket, Key=self.prefix + old.name)
            removed.append(old.name)
        return removed
