"""replace-node's own shortcuts, on a real sandbox swarm (3 managers + 2 workers), checked
where they could go wrong: a manager's twin joins in the old one's index, the old one
parked at the last index by a `terraform state mv` first, and the worker's Terraform plan
is made beside the drain and the leave.

- Killed (SIGKILL) right after the park, before the twin exists: the swarm is untouched,
  and the same command carries on from there, without moving anything twice.
- A plan that would remove another node is refused, also when it was made beside the
  swarm steps; the same command carries on once the cause is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import INVOKE, OFFLINE_TERRAFORM, REPO, invoke, unique_cluster
from tests.sandbox_swarm import Cluster, assert_healthy, ids, start_web

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("rr"), state_root)
    result = cluster.run("apply", "--managers", "3", "--workers", "2", timeout=900)
    assert result.returncode == 0, result.stderr
    start_web(cluster)
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def test_a_manager_replacement_killed_after_the_park_resumes(swarm: Cluster,
                                                             tmp_path: Path) -> None:
    old = f"{swarm.name}-manager-1"
    old_id = swarm.node(old)["id"]
    terraform = _killing_after_state_mv(tmp_path)
    task = subprocess.Popen([*INVOKE, "replace-node", old, "--cluster", swarm.name, "--yes"],
                            cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            env={**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state),
                                 "INVOKE_SWARMFORGE_TERRAFORM_BIN": str(terraform)})
    (tmp_path / "pid").write_text(str(task.pid))
    assert task.wait(timeout=300) == -signal.SIGKILL

    # Killed with the old manager parked at the last index and no twin yet: the swarm
    # is as it was, every manager in it.
    assert _manager_indices(swarm) == {0: f"{swarm.name}-manager-0", 2: f"{swarm.name}-manager-2",
                                       3: old}
    assert_healthy(swarm)
    assert swarm.node(old)["id"] == old_id

    resumed = swarm.run("replace-node", old, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert _manager_indices(swarm) == {0: f"{swarm.name}-manager-0", 1: f"{swarm.name}-manager-9",
                                       2: f"{swarm.name}-manager-2"}
    data = assert_healthy(swarm)
    assert old_id not in [n["id"] for n in data["nodes"]]
    again = swarm.run("apply")
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout


def test_a_plan_made_beside_the_drain_that_removes_another_node_is_refused(
        swarm: Cluster) -> None:
    worker, other = f"{swarm.name}-worker-1", f"{swarm.name}-worker-0"
    before = ids(swarm)
    _terraform(swarm, "taint", "null_resource.swarm_worker[0]")  # its next apply remakes it
    try:
        refused = swarm.run("replace-node", worker, "--yes")
    finally:
        _terraform(swarm, "untaint", "null_resource.swarm_worker[0]")
    assert refused.returncode != 0
    assert ("refusing to apply: Terraform would also remove null_resource.swarm_worker[0]"
            in refused.stderr), refused.stderr
    assert ids(swarm)[other] == before[other]  # never touched

    resumed = swarm.run("replace-node", worker, "--yes")
    assert resumed.returncode == 0, resumed.stderr
    after = ids(swarm)
    assert after[other] == before[other] and after[worker] != before[worker]
    assert_healthy(swarm)


def _killing_after_state_mv(folder: Path) -> Path:
    """A `terraform` that runs the real one, and once a `state mv` is done, kills the run
    (the pid in ``folder``/pid) at its next Terraform command instead of running it."""
    real = shutil.which("terraform") or str(OFFLINE_TERRAFORM)
    moved, wrapper = folder / "moved", folder / "terraform"
    wrapper.write_text(f"""#!/bin/sh
if [ -e "{moved}" ]; then kill -KILL "$(cat "{folder / 'pid'}")"; exit 1; fi
"{real}" "$@"; status=$?
if [ "$1 $2" = "state mv" ] && [ $status -eq 0 ]; then touch "{moved}"; fi
exit $status
""")
    wrapper.chmod(0o755)
    return wrapper


def _manager_indices(cluster: Cluster) -> dict[int, str]:
    """{index: node name} of the managers in the Terraform state, as the file holds them."""
    state = json.loads((cluster.state / cluster.name / "terraform" / "terraform.tfstate").read_text())
    (managers,) = [r for r in state["resources"] if r["name"] == "swarm_manager"]
    return {i["index_key"]: i["attributes"]["triggers"]["host"] for i in managers["instances"]}


def _terraform(cluster: Cluster, *args: str) -> None:
    workdir = cluster.state / cluster.name / "terraform"
    subprocess.run([shutil.which("terraform") or str(OFFLINE_TERRAFORM), *args], cwd=workdir,
                   check=True, capture_output=True, timeout=120,
                   env={**os.environ,
                        "TF_CLI_CONFIG_FILE": str(cluster.state / cluster.name / "terraformrc")})
