"""Backup archives, their stores (a 0700 dir; the state bucket on moto's server), and which
manager a backup may stop (the quorum arithmetic, on swarm listings as Docker gives them)."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from swarmforge.backup import backup_source, copy_script
from swarmforge.backup_store import BackupError, Manifest, packed, unpacked
from swarmforge.errors import QuorumError
from swarmforge.restore import unpack_script
from swarmforge.swarm import Node
from swarmforge.targets.aws import client
from swarmforge.targets.aws.backups import S3Backups
from swarmforge.targets.base import NodeDocker
from swarmforge.targets.local.backups import LocalBackups

REGION = "eu-west-1"


def swarm_dir(text: str = "raft") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo("swarm/raft/wal-0")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest_for(data: bytes, taken: str = "2026-12-06T02:00:19Z") -> Manifest:
    return Manifest(cluster="c1", swarm_id="s1", node_id="n1", hostname="c1-manager-2",
                    docker_version="20.10.24", taken=taken,
                    sha256=hashlib.sha256(data).hexdigest(), autolocked=False)


def test_an_archive_unpacks_to_what_was_packed() -> None:
    data = swarm_dir()
    manifest = manifest_for(data)

    assert unpacked(packed(manifest, data)) == (manifest, data)
    assert manifest.name == "c1-20261206T020019Z-c1-manager-2.tar"


def test_a_damaged_archive_is_refused() -> None:
    data = swarm_dir()
    archive = bytearray(packed(manifest_for(data), data))
    archive[archive.index(data) + len(data) // 2] ^= 0xFF  # inside swarm.tar.gz

    with pytest.raises(BackupError, match="damaged"):
        unpacked(bytes(archive))
    with pytest.raises(BackupError, match="sha256"):
        packed(manifest_for(b"other"), data)


def test_the_local_store_is_private_and_keeps_the_newest(tmp_path: Path) -> None:
    store = LocalBackups(tmp_path / "state" / "c1" / "backups")
    for hour in ("01", "03", "02"):
        data = swarm_dir(hour)
        manifest = manifest_for(data, f"2026-12-06T{hour}:00:00Z")
        stored = store.put(manifest, packed(manifest, data))
        assert stat.S_IMODE(Path(stored.where).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700

    assert [s.manifest.taken[11:13] for s in store.backups()] == ["01", "02", "03"]
    removed = store.prune(2)

    assert removed == ["c1-20261206T010000Z-c1-manager-2.tar"]
    assert [s.manifest.taken[11:13] for s in store.backups()] == ["02", "03"]
    assert unpacked(store.get(store.backups()[-1].name))[1] == swarm_dir("03")
    with pytest.raises(BackupError, match="no backup"):
        store.get("../../etc/passwd")


@pytest.fixture
def s3(endpoint: str) -> Any:
    return client("s3", REGION, endpoint)


def test_the_bucket_store_encrypts_and_prunes(s3: Any) -> None:
    bucket = f"swarmforge-state-{uuid.uuid4().hex[:12]}"
    # As state-bootstrap makes it, but for its TLS-only policy (moto's server is plain HTTP).
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    store = S3Backups(s3, bucket, "swarmforge/c1/backups/")
    for hour in ("01", "02"):
        data = swarm_dir(hour)
        manifest = manifest_for(data, f"2026-12-06T{hour}:00:00Z")
        stored = store.put(manifest, packed(manifest, data))
    assert stored.where == f"s3://{bucket}/swarmforge/c1/backups/{manifest.name}"

    head = s3.head_object(Bucket=bucket, Key=f"swarmforge/c1/backups/{manifest.name}")
    assert head["ServerSideEncryption"] == "AES256"
    assert [s.name for s in store.backups()][-1] == manifest.name
    assert store.prune(1) == ["c1-20261206T010000Z-c1-manager-2.tar"]
    assert [s.manifest.taken for s in store.backups()] == ["2026-12-06T02:00:00Z"]
    # Versioned: the pruned archive is still there as an older version.
    versions = s3.list_object_versions(Bucket=bucket, Prefix="swarmforge/c1/backups/")
    assert len(versions.get("Versions", [])) == 2
    with pytest.raises(BackupError, match="no backup"):
        store.get("c1-missing.tar")


def test_the_bucket_store_uses_the_buckets_kms_key_and_object_lock(endpoint: str,
                                                                   s3: Any) -> None:
    kms = client("kms", REGION, endpoint)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    bucket = f"swarmforge-state-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True,
                     CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                "KMSMasterKeyID": key}}]})
    s3.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 3}}})
    data = swarm_dir()
    manifest = manifest_for(data)

    S3Backups(s3, bucket, "swarmforge/c1/backups/").put(manifest, packed(manifest, data))

    head = s3.head_object(Bucket=bucket, Key=f"swarmforge/c1/backups/{manifest.name}")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert "ObjectLockRetainUntilDate" in head


def node(name: str, status: str, role: str = "manager", ready: str = "ready") -> Node:
    return Node(id=name, hostname=name, role=role, status=ready, availability="active",
                manager_status=status if role == "manager" else None,
                address=f"10.0.0.{len(name)}", engine_version="20.10.24")


def test_a_backup_stops_a_follower_never_the_leader() -> None:
    nodes = [node("m0", "leader"), node("m1", "reachable"), node("m2", "reachable"),
             node("w0", "", role="worker")]

    assert backup_source(nodes).hostname == "m2"
    # Not the manager replace-node replaces next, while another will do.
    assert backup_source(nodes, avoid="m2").hostname == "m1"
    five = [*nodes, node("m3", "unreachable", ready="down"), node("m4", "reachable")]
    assert backup_source(five).hostname == "m4"  # 4 of 5 reachable: one may stop


@pytest.mark.parametrize(("statuses", "words"), [
    (("leader", "reachable", "unreachable"),
     "2 of 3 managers are reachable (manager m2 is unreachable), and stopping one more for the "
     "copy would lose the majority; replace it first: `invoke replace-node m2 --yes`"),
    (("leader", "reachable", "reachable", "unreachable", "unreachable"), "3 of 5"),
])
def test_a_backup_that_would_lose_the_majority_is_refused(statuses: tuple[str, ...],
                                                          words: str) -> None:
    nodes = [node(f"m{i}", s) for i, s in enumerate(statuses)]

    with pytest.raises(QuorumError, match="refusing to back up") as refused:
        backup_source(nodes)
    assert words in str(refused.value)


def test_one_manager_is_backed_up_only_with_downtime_allowed() -> None:
    nodes = [node("m0", "leader"), node("w0", "", role="worker")]

    with pytest.raises(QuorumError, match="--allow-downtime"):
        backup_source(nodes)
    assert backup_source(nodes, allow_downtime=True).hostname == "m0"


def test_docker_starts_again_whatever_the_copy_does() -> None:
    docker = NodeDocker(stop="STOP", start="START", data_root="/var/lib/docker",
                        as_root="sudo -n ")
    copy = copy_script(docker)
    unpack = unpack_script(docker.stop, docker.start, docker.data_root, docker.as_root)

    for script in (copy, unpack):
        assert script.index("trap 'START") < script.index("STOP")
    assert "sudo -n tar -C /var/lib/docker -czf - swarm" in copy
    assert "base64 -d | sudo -n tar -C /var/lib/docker -xzf -" in unpack


def test_a_store_that_cannot_be_written_says_where(tmp_path: Path) -> None:
    (tmp_path / "backups").write_text("a file where the dir should be\n")
    data = swarm_dir()
    manifest = manifest_for(data)

    with pytest.raises(BackupError, match=f"cannot store the backup in {tmp_path / 'backups'}"):
        LocalBackups(tmp_path / "backups").put(manifest, packed(manifest, data))
