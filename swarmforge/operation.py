"""One operation at a time per cluster, and a journal so an interrupted one resumes.

Where both live is the target's choice (``Target.operation_store()``), through the
``OperationStore`` seam below:

- on this machine (``LocalOperations``): the lock is an ``flock`` on a file in the
  cluster's dir, so the kernel drops it when the process dies and a killed run never
  leaves a stale lock behind; the journal is a JSON file beside it;
- beside the Terraform state in S3 (the aws target, ``targets/aws/lease.py``): a
  lease with an owner, a heartbeat and an expiry, and the journal as an object, so a
  CI job and a laptop share one lock and a run on another machine resumes.

The journal is written after each step of a multi-step operation such as
replace-node; a re-run reads it and carries on from there. Its records are typed:
a replacement (one manager, or a batch of workers) with the steps done, inside a
replace-node or a roll.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from swarmforge.errors import SwarmforgeError
from swarmforge.private_files import open_private, private_dirs, write_private
from swarmforge.redact import redact

Say = Callable[[str], None]


class BusyError(SwarmforgeError):
    """Another swarmforge operation holds this cluster."""

    exit_code = 4


class UnfinishedError(SwarmforgeError):
    """An interrupted operation must be finished before another one starts."""

    exit_code = 4


# --- who holds a lock ----------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """Who runs an operation: enough for an operator to find that run, or to tell it is gone."""

    command: str  # e.g. "invoke roll"
    owner: str  # user@host
    pid: int
    since: str  # when it took the lock, UTC
    run: str | None = None  # a CI run's URL (GitHub Actions)

    @classmethod
    def me(cls, command: str) -> Holder:
        return cls(command, f"{_user()}@{socket.gethostname()}", os.getpid(), utc_now(), _ci_run())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Holder:
        return cls(str(data["command"]), str(data["owner"]), int(data["pid"]), str(data["since"]),
                   data.get("run"))

    def describe(self) -> str:
        where = f"pid {self.pid}" + (f", {self.run}" if self.run else "")
        return f"{self.command} by {self.owner} ({where}) since {self.since}"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's)
        return f"uid{os.getuid()}"


def _ci_run() -> str | None:
    """The GitHub Actions run this process belongs to, if any."""
    server, repo, run = (os.environ.get(name) for name in
                         ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    return f"{server}/{repo}/actions/runs/{run}" if server and repo and run else None


# --- the seam: where a cluster's lock and journal live ---------------------------------------


class OperationStore(Protocol):
    """A cluster's lock and journal, wherever its target keeps them."""

    where: str  # for operators: the dir, or s3://bucket/key

    def exclusive(self, what: str, say: Say = lambda line: None) -> AbstractContextManager[None]:
        """Hold the cluster's lock for the ``with`` block, or BusyError at once if it is held.
        ``say`` hears what an operator should know (a lock taken over)."""

    def journal(self) -> Journal:
        """The cluster's journal."""

    def holder(self) -> str | None:
        """Who holds the lock now, in words; None when it is free."""

    def force_unlock(self) -> str | None:
        """Remove the lock whoever holds it; who held it, or None when it was free."""


class JournalStorage(Protocol):
    """Where the journal's one JSON text is kept."""

    where: str

    def read(self) -> str | None: ...

    def write(self, text: str) -> None: ...

    def remove(self) -> None: ...


class LocalOperations:
    """The lock and the journal as files in the cluster's dir on this machine."""

    def __init__(self, cluster_dir: Path, cluster: str) -> None:
        self.cluster_dir = cluster_dir
        self.cluster = cluster
        self.where = str(cluster_dir / LOCK_FILE)

    def exclusive(self, what: str, say: Say = lambda line: None) -> AbstractContextManager[None]:
        return exclusive(self.cluster_dir, self.cluster, what)

    def journal(self) -> Journal:
        return Journal(FileStorage(self.cluster_dir / "journal.json"))

    def holder(self) -> str | None:
        path = self.cluster_dir / LOCK_FILE
        if not path.exists():
            return None
        with path.open("a+") as handle:
            try:  # a shared lock is refused while an operation holds the exclusive one
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                return _holder_text(handle.read())
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def force_unlock(self) -> str | None:
        held = self.holder()
        if held:
            raise BusyError(f"cluster {self.cluster!r} is locked on this machine by {held}: the "
                            "kernel releases that lock when the process ends, and nothing else "
                            "can; wait for it, or stop that process")
        return None


LOCK_FILE = "operation.lock"


@contextlib.contextmanager
def exclusive(lock_dir: Path, cluster: str, what: str) -> Iterator[None]:
    """Hold the ``flock`` in ``lock_dir`` for the ``with`` block, or fail at once if it is taken."""
    private_dirs(lock_dir)
    path = lock_dir / LOCK_FILE
    with open_private(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder_text(handle.read()) or "another process"
            raise BusyError(f"cluster {cluster!r} is busy: {holder}; wait for it to finish "
                            "(two operations on one cluster never run at once)") from None
        handle.truncate(0)
        handle.write(json.dumps(asdict(Holder.me(what))) + "\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _holder_text(text: str) -> str:
    """A lock file's holder in words (a file written by an older version: its text as is)."""
    try:
        return Holder.from_dict(json.loads(text)).describe()
    except (ValueError, KeyError, TypeError):
        return text.strip()


class FileStorage:
    """The journal as a file, replaced atomically: a run killed mid-write leaves the
    previous record whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def read(self) -> str | None:
        try:
            return self.path.read_text()
        except FileNotFoundError:
            return None

    def write(self, text: str) -> None:
        write_private(self.path, text)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


# --- the records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeEntry:
    """A node being replaced, as Terraform and the swarm knew it when the operation began."""

    address: str  # e.g. null_resource.swarm_worker[1]
    name: str
    ip: str
    ssh_host: str
    node_id: str | None  # None: it never joined, or its entry was already gone
    hostname: str


@dataclass
class ReplacementRecord:
    """One replacement: the nodes, the cluster's shape before it, and the steps done."""

    role: str
    nodes: list[NodeEntry]
    managers: int
    workers: int
    slots: list[int]  # the managers' slots before the replacement
    new_slot: int | None = None  # a manager's replacement: the twin slot it joins in
    # A manager's twin joins in the old one's index, the old one parked at the last index
    # first. False in a record journalled before that was so: there the twin joined at the
    # last index and a swap step gave it the old one's index after the old one left.
    twin_in_place: bool = False
    # A dead manager's entry is removed before its twin joins (False: a live one surges). A
    # surge beside a dead manager would count a member that cannot vote: 3 managers with
    # one dead would be 2 of 4 until the twin voted, no majority; this way 2 of 2, then 2
    # of 3 while it joins.
    leaves_first: bool = False
    done: list[str] = field(default_factory=list)
    stopped: str | None = None  # where and why an earlier run stopped (failed, Ctrl-C)

    @property
    def names(self) -> str:
        return ", ".join(n.hostname for n in self.nodes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplacementRecord:
        return cls(**{**data, "nodes": [NodeEntry(**n) for n in data["nodes"]]})


@dataclass(kw_only=True)
class Operation:
    """What every journalled operation says of itself: enough to refuse others and resume."""

    operation: str
    summary: str
    resume: str  # the command that carries on after an interruption
    started: str | None = None


@dataclass(kw_only=True)
class ReplaceNodeRecord(Operation):
    operation: str = "replace-node"
    query: str  # the node as the operator named it
    replacement: ReplacementRecord
    # The operation this one interrupted to replace a dead node (as journalled): it goes
    # back into the journal when this one is done, to be resumed.
    interrupted: dict[str, Any] | None = None


@dataclass(kw_only=True)
class RollRecord(Operation):
    operation: str = "roll"
    max_unavailable: int
    pending: list[str]  # Terraform addresses still to replace
    replaced: list[str] = field(default_factory=list)  # hostnames replaced so far
    current: ReplacementRecord | None = None  # the replacement under way


@dataclass(kw_only=True)
class RestoreRecord(Operation):
    operation: str = "restore"
    survivor: str  # the manager (Terraform's name) the swarm is made anew on
    lost: list[str]  # Terraform addresses of the other managers: made anew
    backup: str | None = None  # the archive unpacked on the survivor; None: its own state
    taken: str | None = None  # the archive's time: what changed after it is lost
    done: list[str] = field(default_factory=list)


def unfinished(cluster: str, record: Operation) -> UnfinishedError:
    """The refusal to start while the journalled operation ``record`` is half done."""
    return UnfinishedError(
        f"cluster {cluster!r} has an unfinished {record.operation} "
        f"({record.summary}, started {record.started or '?'}); "
        f"finish it first: {record.resume}")


class Journal:
    """The cluster's record of the one multi-step operation under way, if any."""

    def __init__(self, storage: JournalStorage) -> None:
        self.storage = storage

    def load(self) -> Operation | None:
        text = self.storage.read()
        if text is None:
            return None
        return _parsed(json.loads(text), self.storage.where)

    def begin(self, record: Operation) -> None:
        record.started = utc_now()
        self.save(record)

    def save(self, record: Operation) -> None:
        # Whatever a record holds (an error's text), no secret is kept, here or in S3.
        self.storage.write(redact(json.dumps(asdict(record), indent=2) + "\n"))

    def finish(self) -> None:
        self.storage.remove()

    def refuse_if_unfinished(self, cluster: str) -> None:
        """For operations that must not start while another one is half done."""
        record = self.load()
        if record:
            raise unfinished(cluster, record)


def restored(data: dict[str, Any]) -> Operation:
    """An operation as the journal held it (``asdict``), e.g. one set aside by another."""
    return _parsed(data, "the interrupted operation")


def _parsed(data: dict[str, Any], where: str) -> Operation:
    try:
        if data["operation"] == "replace-node":
            return ReplaceNodeRecord(**{**data, "replacement":
                                        ReplacementRecord.from_dict(data["replacement"])})
        if data["operation"] == "roll":
            current = data.get("current")
            return RollRecord(**{**data, "current": current and ReplacementRecord.from_dict(current)})
        if data["operation"] == "restore":
            return RestoreRecord(**data)
        return Operation(**data)
    except (KeyError, TypeError) as problem:
        raise SwarmforgeError(f"cannot read the operation journal {where} ({problem}): it was "
                              "written by another swarmforge version; finish that operation "
                              "with it, or remove it once the swarm is healthy") from None
