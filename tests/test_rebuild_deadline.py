"""`invoke rebuild --stop-by`: no bake and no node replacement starts past the deadline
(issue 16, point 12: the scheduled rebuild's AWS credentials expire).

The aws path runs through the real `invoke` CLI against moto's server with the fake
Packer of tests/test_rebuild.py (a cluster without nodes: bake, no roll). The roll's own
stop between two replacements runs on a real sandbox swarm at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from swarmforge.cluster import Cluster as Pipeline
from swarmforge.rebuild import EXIT_REBUILT, EXIT_STOPPED
from swarmforge.roll import roll
from swarmforge.settings import load_settings
from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import Cluster, assert_healthy, ids
from tests.test_bake import EAST, Bake
from tests.test_rebuild import Rebuild, publish_ubuntu


@pytest.fixture
def rebuild(tmp_path: Path, endpoint: str) -> Rebuild:
    return Rebuild(Bake(tmp_path, endpoint), endpoint, tmp_path)


def stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("bad", ["2026-12-07T07:17:00", "tomorrow", "2026-13-01T00:00:00Z"])
def test_a_deadline_without_a_zone_or_not_a_time_stops_before_anything(rebuild: Rebuild,
                                                                       bad: str) -> None:
    rebuild.packer_will_make(publish_ubuntu(EAST))

    refused = rebuild.run("--stop-by", bad)

    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"swarmforge: stop_by: {bad!r} is not an ISO 8601 time "
                                      "with a zone, such as 2026-12-07T08:17:00Z")
    assert rebuild.bake.calls() == [] and not rebuild.report_file.exists()


def test_past_the_deadline_no_bake_starts(rebuild: Rebuild) -> None:
    rebuild.packer_will_make(publish_ubuntu(EAST))
    deadline = datetime.now(timezone.utc) - timedelta(minutes=1)

    stopped = rebuild.run("--stop-by", stamp(deadline))

    assert stopped.returncode == EXIT_STOPPED, stopped.stderr
    report = rebuild.report()
    assert (report["result"], report["exit_code"]) == ("stopped", EXIT_STOPPED)
    assert report["reasons"]  # a bake was due
    assert report["notes"] == [f"stopped before baking: the deadline (--stop-by {stamp(deadline)}) "
                               "has passed; the next `invoke rebuild` carries on"]
    assert report["baked"] == {} and report["pruned"] == [] and report["error"] is None
    assert rebuild.bake.calls() == []  # Packer never ran
    assert f"rebuild of cluster '{rebuild.cluster}' on aws: stopped" in stopped.stdout


def test_before_the_deadline_the_rebuild_runs_as_without_one(rebuild: Rebuild) -> None:
    ami = rebuild.packer_will_make(publish_ubuntu(EAST))
    # Another zone than UTC: the same moment.
    later = datetime.now(timezone(timedelta(hours=-5))) + timedelta(hours=3)

    done = rebuild.run("--stop-by", later.isoformat(timespec="seconds"))

    assert done.returncode == EXIT_REBUILT, done.stderr
    assert rebuild.report()["baked"] == {EAST: ami} and rebuild.current() == ami


# --- the roll stops between two replacements, on a real sandbox swarm ----------------------------


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("dl"), tmp_path_factory.mktemp("deadline-state"))
    try:
        created = cluster.run("apply", "--managers", "1", "--workers", "3", timeout=900)
        assert created.returncode == 0, created.stderr
        yield cluster
    finally:
        invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=cluster.state, timeout=600)


def pipeline(cluster: Cluster) -> Pipeline:
    return Pipeline(load_settings({"state_dir": str(cluster.state)}, {"cluster": cluster.name}))


def journal(cluster: Cluster) -> dict[str, Any] | None:
    """The local target's journal, as the next run reads it."""
    path = cluster.state / cluster.name / "journal.json"
    found: dict[str, Any] | None = json.loads(path.read_text()) if path.exists() else None
    return found


@pytest.mark.sandbox
@pytest.mark.usefixtures("require_sandbox")
def test_the_roll_starts_no_replacement_past_the_deadline(swarm: Cluster) -> None:
    before = ids(swarm)

    # Past it already: nothing begins, and nothing is left in the journal.
    outcome = roll(pipeline(swarm), everything=True, act=True,
                   stop_by=datetime.now(timezone.utc) - timedelta(seconds=1))
    assert (outcome.acted, outcome.replaced) == (False, [])
    assert outcome.left == ("swarm_worker[0]", "swarm_worker[1]", "swarm_worker[2]",
                            "swarm_manager[0]")
    assert journal(swarm) is None and ids(swarm) == before

    # The first replacement starts 2 s before the deadline and so runs across it: one takes
    # longer (drain, leave, terraform apply -replace, a new host, its join, a healthy swarm).
    stop_by = datetime.now(timezone.utc) + timedelta(seconds=30)
    first_at = stop_by - timedelta(seconds=2)

    def start_just_before_the_deadline(plan: list[str]) -> None:  # the checks are done
        assert plan[0] == "1. replace worker(s) swarm_worker[0]"
        wait = (first_at - datetime.now(timezone.utc)).total_seconds()
        assert wait > 0, "the roll's checks took 28 s"
        time.sleep(wait)

    outcome = roll(pipeline(swarm), everything=True, act=True,
                   show=start_just_before_the_deadline, stop_by=stop_by)

    assert outcome.acted and outcome.replaced == [f"{swarm.name}-worker-0"], outcome
    assert outcome.left == ("swarm_worker[1]", "swarm_worker[2]", "swarm_manager[0]")
    record = journal(swarm)  # kept for the next run: what is left, nothing half-done
    assert record is not None and record["operation"] == "roll"
    assert record["current"] is None and record["replaced"] == outcome.replaced
    assert [a.split(".", 1)[1] for a in record["pending"]] == list(outcome.left)
    after = ids(swarm)
    assert {h for h in before if before[h] != after.get(h)} == set(outcome.replaced)
    assert_healthy(swarm, managers=1, workers=3)
    # The next run's plan is the journal's rest, workers first, and changes nothing.
    preview = swarm.run("roll")
    assert preview.returncode == 0, preview.stderr
    plan = [line for line in preview.stdout.splitlines() if line[:1].isdigit()]
    assert [line.split(" ", 3)[-1] for line in plan[:-1]] == list(outcome.left[:-1])
    assert plan[-1].endswith("replace manager swarm_manager[0] (the leader goes last)")
    assert ids(swarm) == after
