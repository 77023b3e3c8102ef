"""Small, checked wrappers over the Linux tools the sandbox drives (ip, iptables, kill)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from swarmforge.errors import SandboxError
from swarmforge.process import Completed, run


def sh(argv: Sequence[str], what: str) -> Completed:
    """Run a system command that must succeed."""
    result = run(argv)
    if not result.ok:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise SandboxError(f"{what}: {' '.join(argv)}: {detail[-1] if detail else 'failed'}")
    return result


def succeeds(argv: Sequence[str]) -> bool:
    return run(argv).ok


def pid_from_file(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z"


def cmdline_mentions(pid: int, marker: str) -> bool:
    """True if the process's argv mentions ``marker``: guards against a recycled pid."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def stop(pids: Iterable[int], grace: float) -> None:
    """TERM the pids, wait up to ``grace`` seconds, then KILL what is left."""
    pending = [pid for pid in pids if alive(pid)]
    _signal_all(pending, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        time.sleep(0.1)
        pending = [pid for pid in pending if alive(pid)]
    _signal_all(pending, signal.SIGKILL)


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (the order to unmount them)."""
    prefix = str(root).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: p.count("/"), reverse=True)


def unmount_all(root: Path) -> None:
    for point in mounts_under(root):
        run(["umount", "-l", point])
