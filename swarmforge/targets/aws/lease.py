"""The cluster's lock and journal in S3, beside its Terraform state: one for every machine.

A CI job and a laptop acting on one cluster see the same lock, and a run that
dies on one machine is resumed from the journal by a run on another. Both are
objects next to the state (``<state_key>`` is ``swarmforge/<cluster>/terraform.tfstate``):

- ``<state_key>.swarmforge-lock.json``: the lease. Taken with a conditional write
  (``If-None-Match: *``), so two runs can never both create it; it names its holder
  (user@host, pid, command, the CI run's URL) and when it expires. A heartbeat
  thread renews it (``If-Match`` its ETag) well before then. A run that died leaves
  a lease nobody renews: once expired, the next run takes it over, again only if
  its ETag is still the one it read, and says whose it was. A lease renewed by a
  live run is never taken: the second run stops at once, naming the holder.
- ``<state_key>.swarmforge-journal.json``: the journal, each write conditional on
  the ETag this run last saw (or on there being none), and refused once this run
  lost its lease, so two runs can never interleave their records.

Expiry is judged by the clocks of the machines involved (the lease says when it
expires): they must agree within minutes, as NTP keeps them; the lease is ten.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from swarmforge.errors import SwarmforgeError
from swarmforge.operation import BusyError, Holder, Journal, Say

LOCK_SUFFIX = ".swarmforge-lock.json"
JOURNAL_SUFFIX = ".swarmforge-journal.json"
LEASE_SECONDS = 600.0  # a run that stopped renewing is taken over this long after its last renewal
HEARTBEAT_SECONDS = 60.0  # how often a live run renews its lease
CONFLICT = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412")


class LeaseLostError(SwarmforgeError):
    """Another run took this run's lease (an `invoke unlock --force`, or it expired)."""

    exit_code = 4


@dataclass(frozen=True)
class Lease:
    """What the lock object says."""

    holder: Holder
    expires: str  # ISO 8601, UTC
    token: str  # this holding's own: two holdings never write the same bytes (nor ETag)

    def expired(self) -> bool:
        return datetime.fromisoformat(self.expires) <= datetime.now(timezone.utc)

    def body(self) -> bytes:
        return json.dumps({**asdict(self), "holder": asdict(self.holder)}, indent=2).encode()

    @classmethod
    def parse(cls, body: bytes) -> Lease:
        data = json.loads(body)
        return cls(Holder.from_dict(data["holder"]), str(data["expires"]), str(data["token"]))


class S3Operations:
    """The OperationStore of a cluster whose Terraform state is in ``bucket`` at ``state_key``."""

    def __init__(self, s3: Any, bucket: str, state_key: str, cluster: str, *,
                 lease_seconds: float = LEASE_SECONDS,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = state_key + LOCK_SUFFIX
        self.journal_key = state_key + JOURNAL_SUFFIX
        self.cluster = cluster
        self.where = f"s3://{bucket}/{self.key}"
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._etag: str | None = None  # of the lease this run holds
        self._lost: str | None = None  # why this run no longer holds it

    # -- the lock -------------------------------------------------------------

    @contextlib.contextmanager
    def exclusive(self, what: str, say: Say = lambda line: None) -> Iterator[None]:
        lease = Lease(Holder.me(what), "", uuid.uuid4().hex)
        self._etag, self._lost = self._acquire(lease, say), None
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(lease, stop), daemon=True,
                                name=f"lease {self.cluster}")
        beat.start()
        try:
            yield
        finally:
            stop.set()
            beat.join()
            # S3 unreachable: the lease runs out by itself; never mask the run's own error.
            with contextlib.suppress(ClientError, BotoCoreError):
                self._release()

    def _acquire(self, lease: Lease, say: Say) -> str:
        for _ in range(5):  # only a lock that changes hands meanwhile asks again
            with _conflict_is_none():
                return self._put(lease, IfNoneMatch="*")
            found = self._read()
            if found is None:
                continue  # released meanwhile
            held, etag = found
            if not held.expired():
                raise BusyError(self._busy(held))
            with _conflict_is_none():
                taken = self._put(lease, IfMatch=etag)
                say(f"took over the lock of cluster {self.cluster!r}: its lease, held by "
                    f"{held.holder.describe()}, expired at {held.expires} (that run is gone)")
                return taken
        raise BusyError(f"cluster {self.cluster!r} is busy: its lock {self.where} changed hands "
                        "five times while this run asked for it; try again")

    def _busy(self, held: Lease) -> str:
        return (f"cluster {self.cluster!r} is busy: {held.holder.describe()}, its lease renewed "
                f"until {held.expires}; wait for it to finish (two operations on one cluster "
                f"never run at once), or if that run is gone: invoke unlock --force "
                f"--cluster {self.cluster} --target aws")

    def _put(self, lease: Lease, **condition: str) -> str:
        until = datetime.now(timezone.utc) + timedelta(seconds=self.lease_seconds)
        renewed = Lease(lease.holder, until.isoformat(timespec="seconds"), lease.token)
        answer = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=renewed.body(),
                                    ContentType="application/json", **condition)
        return str(answer["ETag"])

    def _heartbeat(self, lease: Lease, stop: threading.Event) -> None:
        while not stop.wait(self.heartbeat_seconds):
            assert self._etag is not None
            try:
                self._etag = self._put(lease, IfMatch=self._etag)
            except ClientError as error:
                if _code(error) in CONFLICT:
                    found = self._read()
                    self._lost = (f"its lease is now held by {found[0].holder.describe()}"
                                  if found else "its lease was removed (invoke unlock --force)")
                    return
                # S3 unreachable for a moment: the next beat tries again, well within the lease.

    def _release(self) -> None:
        if self._lost or self._etag is None:
            return  # not ours any more: never remove another run's lease
        with _conflict_is_none():
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self._etag)
        self._etag = None

    def check_held(self) -> None:
        """LeaseLostError once another run took this run's lease: stop before the next step."""
        if self._lost:
            raise LeaseLostError(f"cluster {self.cluster!r}: this run lost its lock ({self._lost}); "
                                 "it stopped before its next step: see `invoke unlock` for who "
                                 "holds the cluster and what is left to finish")

    def _read(self) -> tuple[Lease, str] | None:
        """The lease as it is now, and its ETag; None when there is none."""
        with _conflict_is_none():
            answer = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            return Lease.parse(answer["Body"].read()), str(answer["ETag"])
        return None

    def holder(self) -> str | None:
        found = self._read()
        if found is None:
            return None
        held = found[0]
        state = (f"expired at {held.expires}: the next run takes it over" if held.expired()
                 else f"lease renewed until {held.expires}")
        return f"{held.holder.describe()} ({state})"

    def force_unlock(self) -> str | None:
        found = self._read()
        if found is None:
            return None
        with _conflict_is_none():  # gone or renewed meanwhile: say who held it as read
            self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=found[1])
        return found[0].holder.describe()

    # -- the journal ----------------------------------------------------------

    def journal(self) -> Journal:
        return Journal(S3Storage(self.s3, self.bucket, self.journal_key, self.check_held))


class S3Storage:
    """The journal's text as an S3 object, written only over the version this run last saw."""

    def __init__(self, s3: Any, bucket: str, key: str, check: Callable[[], None]) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.where = f"s3://{bucket}/{key}"
        self._check = check
        self._etag: str | None = None  # of the version this run read or wrote last

    def read(self) -> str | None:
        with _conflict_is_none():
            answer = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            self._etag = str(answer["ETag"])
            return str(answer["Body"].read().decode())
        self._etag = None
        return None

    def write(self, text: str) -> None:
        self._check()
        condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=text.encode(),
                                        ContentType="application/json", **condition)
        except ClientError as error:
            if _code(error) in CONFLICT:
                raise SwarmforgeError(f"the operation journal {self.where} was changed by another "
                                      "run meanwhile: this run stopped; `invoke unlock` shows "
                                      "who holds the cluster") from None
            raise
        self._etag = str(answer["ETag"])

    def remove(self) -> None:
        self._check()
        with _conflict_is_none():  # already gone: nothing left to finish
            self.s3.delete_object(Bucket=self.bucket, Key=self.key,
                                  **({"IfMatch": self._etag} if self._etag else {}))
        self._etag = None


@contextlib.contextmanager
def _conflict_is_none() -> Iterator[None]:
    """A failed condition (or a missing object) ends the block quietly; the caller goes on
    after it as for an answer of None. Any other error is raised."""
    try:
        yield
    except ClientError as error:
        if _code(error) not in CONFLICT:
            raise


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
