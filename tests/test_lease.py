"""One lock and one journal per cluster wherever the operator runs: on aws, a lease and the
journal in S3 beside the Terraform state (moto's server on loopback, real boto3); on local,
the flock and the file in the cluster's dir, as ever.

Each "machine" is its own state dir and its own S3Operations; what they share is the bucket.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from swarmforge.operation import BusyError, LocalOperations, RollRecord
from swarmforge.settings import Settings
from swarmforge.targets.aws import client
from swarmforge.targets.aws.lease import JOURNAL_SUFFIX, LOCK_SUFFIX, LeaseLostError, S3Operations
from swarmforge.targets.aws.target import AwsTarget
from swarmforge.targets.local.target import LocalTarget
from tests.conftest import invoke, unique_cluster

REGION = "eu-west-1"


class Bucket:
    """A state bucket in moto, and one cluster's key in it."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.s3 = client("s3", REGION, endpoint)
        self.name = f"state-{uuid.uuid4().hex[:12]}"
        self.s3.create_bucket(Bucket=self.name,
                              CreateBucketConfiguration={"LocationConstraint": REGION})
        self.cluster = unique_cluster("lease")
        self.state_key = f"swarmforge/{self.cluster}/terraform.tfstate"

    def machine(self, **timing: float) -> S3Operations:
        """The lock and journal as one machine's run sees them (its own client)."""
        return S3Operations(client("s3", REGION, self.endpoint), self.name, self.state_key,
                            self.cluster, **timing)

    def lease(self) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=self.name, Key=self.state_key + LOCK_SUFFIX)["Body"]
        found: dict[str, Any] = json.loads(body.read())
        return found

    def has(self, suffix: str) -> bool:
        listed = self.s3.list_objects_v2(Bucket=self.name, Prefix=self.state_key + suffix)
        return bool(listed.get("Contents"))


@pytest.fixture
def bucket(endpoint: str) -> Bucket:
    return Bucket(endpoint)


def test_a_second_holder_is_refused_at_once_naming_the_first(bucket: Bucket) -> None:
    laptop, ci = bucket.machine(), bucket.machine()
    with laptop.exclusive("invoke roll"):
        lease = bucket.lease()
        assert lease["holder"]["command"] == "invoke roll"
        assert lease["holder"]["pid"] == os.getpid() and "@" in lease["holder"]["owner"]
        started = time.monotonic()
        with pytest.raises(BusyError) as refused, ci.exclusive("invoke apply"):
            pytest.fail("two holders at once")
        assert time.monotonic() - started < 5  # at once, no waiting
    message = str(refused.value)
    assert f"cluster {bucket.cluster!r} is busy: invoke roll by {lease['holder']['owner']} " \
           f"(pid {os.getpid()}) since {lease['holder']['since']}" in message
    assert f"invoke unlock --force --cluster {bucket.cluster}" in message
    assert refused.value.exit_code == 4
    # Released on the way out: the next one gets it.
    assert not bucket.has(LOCK_SUFFIX)
    with ci.exclusive("invoke apply"):
        assert bucket.lease()["holder"]["command"] == "invoke apply"


def test_the_lease_names_the_ci_run(bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/infra")
    monkeypatch.setenv("GITHUB_RUN_ID", "4242")
    with bucket.machine().exclusive("invoke rebuild"):
        assert bucket.lease()["holder"]["run"] == "https://github.com/acme/infra/actions/runs/4242"
        with pytest.raises(BusyError, match="actions/runs/4242"), bucket.machine().exclusive("x"):
            pass


def test_an_expired_lease_is_taken_over_and_its_holder_named(bucket: Bucket) -> None:
    dead = bucket.machine(lease_seconds=1, heartbeat_seconds=3600)  # never renews in time
    heard: list[str] = []
    with dead.exclusive("invoke roll"):
        old = bucket.lease()
        holder = old["holder"]
        time.sleep(1.5)  # a run killed now renews nothing: its lease runs out
        with bucket.machine().exclusive("invoke rebuild", heard.append):
            assert bucket.lease()["holder"]["command"] == "invoke rebuild"
            assert heard == [f"took over the lock of cluster {bucket.cluster!r}: its lease, held "
                             f"by invoke roll by {holder['owner']} (pid {holder['pid']}) since "
                             f"{holder['since']}, expired at {old['expires']} (that run is gone)"]
        # The first run's way out never removes the lease it lost (its ETag is stale).
    assert not bucket.has(LOCK_SUFFIX)  # the taker released its own


def test_a_lost_lease_is_not_removed_by_its_old_holder(bucket: Bucket) -> None:
    dead = bucket.machine(lease_seconds=1, heartbeat_seconds=3600)
    taker = bucket.machine()
    with dead.exclusive("invoke roll"):
        time.sleep(1.5)
        ready, done = threading.Event(), threading.Event()

        def hold() -> None:
            with taker.exclusive("invoke apply"):
                ready.set()
                done.wait(30)

        thread = threading.Thread(target=hold)
        thread.start()
        assert ready.wait(30)
    # The old holder left its block: the taker's lease is still there, still the taker's.
    assert bucket.lease()["holder"]["command"] == "invoke apply"
    done.set()
    thread.join()


def test_the_heartbeat_keeps_a_live_lease(bucket: Bucket) -> None:
    live = bucket.machine(lease_seconds=2, heartbeat_seconds=0.3)
    with live.exclusive("invoke roll"):
        first = bucket.lease()["expires"]
        time.sleep(3)  # past the first expiry: only renewals keep it
        assert bucket.lease()["expires"] > first
        with pytest.raises(BusyError, match="invoke roll"), bucket.machine().exclusive("x"):
            pass
    assert not bucket.has(LOCK_SUFFIX)


def test_a_run_whose_lease_was_forced_away_stops_before_its_next_step(bucket: Bucket) -> None:
    live = bucket.machine(lease_seconds=60, heartbeat_seconds=0.2)
    journal = live.journal()
    with live.exclusive("invoke roll"):
        journal.begin(_roll_record(bucket.cluster))
        other = bucket.machine()
        assert "invoke roll" in str(other.holder())
        assert "invoke roll" in str(other.force_unlock())
        assert other.holder() is None
        time.sleep(1)  # a heartbeat finds the lease gone
        with pytest.raises(LeaseLostError, match="lost its lock"):
            journal.save(_roll_record(bucket.cluster))
    assert not bucket.has(LOCK_SUFFIX)
    assert bucket.has(JOURNAL_SUFFIX)  # what was done is still recorded


def test_the_journal_written_on_one_machine_is_read_on_another(bucket: Bucket, tmp_path: Path) -> None:
    laptop = _aws_settings(bucket, tmp_path / "laptop")
    runner = _aws_settings(bucket, tmp_path / "runner")
    record = _roll_record(bucket.cluster)
    operations = AwsTarget(laptop).operation_store()
    with operations.exclusive("invoke roll"):
        operations.journal().begin(record)  # the laptop's run dies here

    found = AwsTarget(runner).operation_store().journal().load()

    assert found == record and isinstance(found, RollRecord) and found.started
    assert not (tmp_path / "laptop" / bucket.cluster / "journal.json").exists()
    # The runner carries it on: its writes go over the laptop's version, then it finishes.
    resumed = AwsTarget(runner).operation_store()
    with resumed.exclusive("invoke roll"):
        journal = resumed.journal()
        carried = journal.load()
        assert isinstance(carried, RollRecord)
        carried.pending, carried.replaced = carried.pending[1:], ["w0"]
        journal.save(carried)
        assert AwsTarget(laptop).operation_store().journal().load() == carried
        journal.finish()
    assert not bucket.has(JOURNAL_SUFFIX)


def test_two_runs_never_interleave_journal_writes(bucket: Bucket) -> None:
    first, second = bucket.machine().journal(), bucket.machine().journal()
    assert first.load() is None and second.load() is None
    first.begin(_roll_record(bucket.cluster))
    with pytest.raises(Exception, match="was changed by another run"):
        second.begin(_roll_record(bucket.cluster))


def test_apply_on_another_machine_refuses_the_unfinished_roll(bucket: Bucket, tmp_path: Path) -> None:
    operations = AwsTarget(_aws_settings(bucket, tmp_path / "a")).operation_store()
    with operations.exclusive("invoke roll"):
        operations.journal().begin(_roll_record(bucket.cluster))
    config = _aws_config(bucket, tmp_path / "b")

    applied = invoke("-f", str(config), "apply", "--yes", state_dir=tmp_path / "b", timeout=120)

    assert applied.returncode == 4
    assert f"cluster {bucket.cluster!r} has an unfinished roll (roll 2 node(s), started " \
           in applied.stderr


def test_invoke_unlock_shows_the_holder_and_force_removes_the_lease(bucket: Bucket,
                                                                    tmp_path: Path) -> None:
    config = _aws_config(bucket, tmp_path / "ops")
    dead = bucket.machine(heartbeat_seconds=3600)
    with dead.exclusive("invoke roll"):
        dead.journal().begin(_roll_record(bucket.cluster))
        # A run killed here leaves its lease (for 10 minutes) and its journal.
        shown = invoke("-f", str(config), "unlock", state_dir=tmp_path / "ops", timeout=120)
        assert shown.returncode == 0, shown.stderr
        assert f"lock at s3://{bucket.name}/{bucket.state_key}{LOCK_SUFFIX}" in shown.stdout
        assert f"held by invoke roll by {bucket.lease()['holder']['owner']}" in shown.stdout
        assert "unfinished: roll (roll 2 node(s), started " in shown.stdout
        assert "to finish it: invoke roll --cluster" in shown.stdout

        unasked = invoke("-f", str(config), "unlock", "--force", state_dir=tmp_path / "ops",
                         timeout=120)  # no terminal, no --yes: nothing removed
        assert unasked.returncode == 1 and "nothing unlocked" in unasked.stderr
        assert bucket.has(LOCK_SUFFIX)

        forced = invoke("-f", str(config), "unlock", "--force", "--yes",
                        state_dir=tmp_path / "ops", timeout=120)
        assert forced.returncode == 0, forced.stderr
        assert f"cluster {bucket.cluster!r}: removed the lock held by invoke roll" in forced.stdout
        assert not bucket.has(LOCK_SUFFIX)
        assert bucket.has(JOURNAL_SUFFIX)  # the journal is never forced away: it is resumed

    shown = invoke("-f", str(config), "unlock", state_dir=tmp_path / "ops", timeout=120)
    assert "free: no operation is running" in shown.stdout


def test_the_local_target_keeps_its_lock_and_journal_in_the_cluster_dir(tmp_path: Path) -> None:
    settings = Settings(cluster=unique_cluster("lk"), state_dir=str(tmp_path))
    operations = LocalTarget(settings).operation_store()
    assert isinstance(operations, LocalOperations)
    assert operations.holder() is None
    with operations.exclusive("invoke roll"):
        assert (tmp_path / settings.cluster / "operation.lock").exists()
        operations.journal().begin(_roll_record(settings.cluster))
        assert (tmp_path / settings.cluster / "journal.json").exists()
        assert "invoke roll by " in str(operations.holder())
        with pytest.raises(BusyError, match=r"is busy: invoke roll by .* since "):
            LocalTarget(settings).operation_store().exclusive("invoke apply").__enter__()
        with pytest.raises(BusyError, match="the kernel releases that lock"):
            operations.force_unlock()
    assert operations.holder() is None
    found = operations.journal().load()
    assert isinstance(found, RollRecord) and found.pending == _roll_record(settings.cluster).pending
    operations.journal().finish()
    assert not (tmp_path / settings.cluster / "journal.json").exists()


# --- helpers -----------------------------------------------------------------------------------


def _roll_record(cluster: str) -> RollRecord:
    return RollRecord(summary="roll 2 node(s)",
                      resume=f"invoke roll --cluster {cluster} --target aws --yes",
                      max_unavailable=1,
                      pending=["aws_instance.swarm_worker[0]", "aws_instance.swarm_worker[1]"])


def _aws_values(bucket: Bucket, state_dir: Path) -> dict[str, Any]:
    state_dir.mkdir(parents=True, exist_ok=True)
    key = state_dir / "swarm.key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n")
    key.chmod(0o600)
    return {"target": "aws", "cluster": bucket.cluster, "region": REGION,
            "state_dir": str(state_dir), "aws_endpoint": bucket.endpoint,
            "state_bucket": bucket.name, "state_endpoint": bucket.endpoint, "key_name": "swarm",
            "ssh_key": str(key), "allowed_ssh_cidrs": ["203.0.113.7/32"]}


def _aws_settings(bucket: Bucket, state_dir: Path) -> Settings:
    values = _aws_values(bucket, state_dir)
    values["allowed_ssh_cidrs"] = tuple(values["allowed_ssh_cidrs"])
    return replace(Settings(), **values)


def _aws_config(bucket: Bucket, state_dir: Path) -> Path:
    config = state_dir / "swarmforge.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(json.dumps({"swarmforge": _aws_values(bucket, state_dir)}))  # JSON is YAML
    return config
