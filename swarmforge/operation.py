"""One operation at a time per cluster, and a journal so an interrupted one resumes.

The lock is an ``flock`` on a file in the cluster's dir: the kernel drops it when
the process dies, so a killed run never leaves a stale lock behind. The journal
is a small JSON file written (atomically) after each step of a multi-step
operation such as replace-node; a re-run reads it and carries on from there.
Its records are typed: a replacement (one manager, or a batch of workers) with
the steps done, inside a replace-node or a roll.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarmforge.errors import SwarmforgeError


class BusyError(SwarmforgeError):
    """Another swarmforge operation holds this cluster."""

    exit_code = 4


class UnfinishedError(SwarmforgeError):
    """An interrupted operation must be finished before another one starts."""

    exit_code = 4


@contextlib.contextmanager
def exclusive(cluster_dir: Path, cluster: str, what: str) -> Iterator[None]:
    """Hold the cluster's lock for the ``with`` block, or fail at once if it is taken."""
    cluster_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = cluster_dir / "operation.lock"
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BusyError(f"cluster {cluster!r} is busy: {holder}; wait for it to finish "
                            "(two operations on one cluster never run at once)") from None
        handle.truncate(0)
        handle.write(f"{what} (pid {os.getpid()})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    done: list[str] = field(default_factory=list)

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


@dataclass(kw_only=True)
class RollRecord(Operation):
    operation: str = "roll"
    max_unavailable: int
    pending: list[str]  # Terraform addresses still to replace
    replaced: list[str] = field(default_factory=list)  # hostnames replaced so far
    current: ReplacementRecord | None = None  # the replacement under way


def unfinished(cluster: str, record: Operation) -> UnfinishedError:
    """The refusal to start while the journalled operation ``record`` is half done."""
    return UnfinishedError(
        f"cluster {cluster!r} has an unfinished {record.operation} "
        f"({record.summary}, started {record.started or '?'}); "
        f"finish it first: {record.resume}")


class Journal:
    """The cluster's record of the one multi-step operation under way, if any."""

    def __init__(self, cluster_dir: Path) -> None:
        self.path = cluster_dir / "journal.json"

    def load(self) -> Operation | None:
        if not self.path.exists():
            return None
        return _parsed(json.loads(self.path.read_text()), self.path)

    def begin(self, record: Operation) -> None:
        record.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.save(record)

    def save(self, record: Operation) -> None:
        """Write atomically: a run killed mid-write leaves the previous record whole."""
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(record), indent=2) + "\n")
        os.replace(temporary, self.path)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)

    def refuse_if_unfinished(self, cluster: str) -> None:
        """For operations that must not start while another one is half done."""
        record = self.load()
        if record:
            raise unfinished(cluster, record)


def _parsed(data: dict[str, Any], path: Path) -> Operation:
    try:
        if data["operation"] == "replace-node":
            return ReplaceNodeRecord(**{**data, "replacement":
                                        ReplacementRecord.from_dict(data["replacement"])})
        if data["operation"] == "roll":
            current = data.get("current")
            return RollRecord(**{**data, "current": current and ReplacementRecord.from_dict(current)})
        return Operation(**data)
    except (KeyError, TypeError) as problem:
        raise SwarmforgeError(f"cannot read the operation journal {path} ({problem}): it was "
                              "written by another swarmforge version; finish that operation "
                              "with it, or remove the file once the swarm is healthy") from None
