"""The benchmarks' floor (benchmarks/_bench.py) works, and keeps its tokens out of argv.

Quick checks of the code the benchmarks compare against; no timing is asserted
(benchmarks are scripts: see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.leaks import ArgvWatcher

sys.path.insert(0, str(REPO / "benchmarks"))
from _bench import FloorCluster, host_seconds, union_length


def test_overlapping_intervals_count_once() -> None:
    assert union_length([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0), (5.5, 5.7)]) == 4.0


def test_host_time_is_read_from_terraforms_local_exec_events() -> None:
    def event(kind: str, addr: str, at: str, provisioner: str = "local-exec") -> dict:
        return {"type": kind, "@timestamp": f"2026-01-01T00:00:{at}Z",
                "hook": {"resource": {"addr": addr}, "provisioner": provisioner}}

    events = [event("provision_start", "a", "00.0"), event("provision_start", "b", "01.0"),
              event("provision_complete", "a", "02.0"), event("provision_complete", "b", "03.5"),
              event("provision_start", "a", "04.0", "remote-exec"),
              event("provision_complete", "a", "09.0", "remote-exec")]
    assert host_seconds(events) == 3.5


@pytest.mark.sandbox
@pytest.mark.usefixtures("require_sandbox")
def test_the_floor_forms_a_swarm_with_no_token_in_argv(tmp_path: Path) -> None:
    floor = FloorCluster("t", tmp_path)
    floor.prepare()
    try:
        with ArgvWatcher(interval=0.005, marker=b"http://docker/swarm/join") as watcher:
            times = floor.form(1, 1)
        manager = floor.address("manager", 0)
        assert watcher.marked > 0 and watcher.seen == []
        assert list(times.steps) == ["init", "tokens", "joins", "check"] and times.hosts > 0
        assert floor.ssh(manager, "docker node ls --format '{{.Status}}'").split() == ["Ready"] * 2
        # A node's sessions have a home of their own, not this machine's ~/.bashrc.
        assert floor.ssh(manager, 'echo "$HOME"').strip() == str(floor.sandbox.dir / "m0" / "home")
    finally:
        floor.teardown()
    assert not floor.sandbox.dir.exists()
