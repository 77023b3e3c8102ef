"""One operation at a time per cluster, and a journal so an interrupted one resumes.

The lock is an ``flock`` on a file in the cluster's dir: the kernel drops it when
the process dies, so a killed run never leaves a stale lock behind. The journal
is a small JSON file written (atomically) after each step of a multi-step
operation such as replace-node; a re-run reads it and carries on from there.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
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


def unfinished(cluster: str, record: dict[str, Any]) -> UnfinishedError:
    """The refusal to start while the journalled operation ``record`` is half done."""
    return UnfinishedError(
        f"cluster {cluster!r} has an unfinished {record['operation']} "
        f"({record.get('summary', '')}, started {record.get('started', '?')}); "
        f"finish it first: {record['resume']}")


class Journal:
    """The record of one multi-step operation: what it is and which steps are done."""

    def __init__(self, cluster_dir: Path) -> None:
        self.path = cluster_dir / "journal.json"

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        record: dict[str, Any] = json.loads(self.path.read_text())
        return record

    def begin(self, record: dict[str, Any]) -> dict[str, Any]:
        started = {**record, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "done": []}
        self._write(started)
        return started

    def done(self, record: dict[str, Any], step: str) -> None:
        record["done"] = [*record.get("done", []), step]
        self._write(record)

    def update(self, record: dict[str, Any]) -> None:
        self._write(record)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)

    def refuse_if_unfinished(self, cluster: str) -> None:
        """For operations that must not start while another one is half done."""
        record = self.load()
        if record:
            raise unfinished(cluster, record)

    def _write(self, record: dict[str, Any]) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(temporary, self.path)
