"""A failure and a Ctrl-C half-way through an operation, on a real sandbox swarm (issue 17,
points 2 and 10).

Point 2: the manager's `docker swarm join-token -q worker` fails after its
`join-token -q manager` answered (the manager's shell refuses the second read: a
function in its host's ~/.bashrc, which the node's sshd sessions read), so the manager's
token is on ssh's stdout when the read fails. replace-node fails on it, then rebuild,
which resumes it, fails the same way; nothing written (stdout, stderr, the journal, the
rebuild report, any file in the state dir) holds a token.

Point 10: Ctrl-C (SIGINT to the foreground process group) while replace-node's Terraform
runs: one line that names the step and the resume command, exit 130, the journal says
where it stopped, and the resume command finishes the job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import INVOKE, REPO, invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX, Cluster, assert_healthy

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

# Only the worker token's read fails, as a manager that lost its control plane between the
# two reads would; every other docker command runs as it is.
REFUSE_WORKER_TOKEN = """
docker() {
  if [ "$*" = "swarm join-token -q worker" ]; then
    echo "Error response from daemon: injected failure of the worker token's read" >&2
    return 1
  fi
  command docker "$@"
}
"""


@pytest.fixture(scope="module")
def swarm(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("fl"), state_root)
    result = cluster.run("apply", "--managers", "1", "--workers", "1", timeout=900)
    assert result.returncode == 0, result.stderr
    yield cluster
    _refuse_worker_token(cluster, False)
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def _refuse_worker_token(cluster: Cluster, refuse: bool) -> None:
    for home in (SANDBOX / cluster.name).glob("m*/home"):
        bashrc = home / ".bashrc"
        if refuse:
            bashrc.write_text(REFUSE_WORKER_TOKEN)
        else:
            bashrc.unlink(missing_ok=True)


def _the_one_line(stderr: str) -> str:
    """The error line: the last of stderr, and the only one that says ``swarmforge:``."""
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if line.startswith("swarmforge:")]
    assert len(said) == 1 and stderr.strip().splitlines()[-1] == said[0], stderr
    return said[0]


# A join token as Docker makes it (the prefix alone is in our own files: a Terraform
# validation, the node script's redaction).
TOKEN = re.compile(rb"SWMTKN-1-[0-9a-z]{20,}-[0-9a-z]{20,}")


def _files_holding_a_token(root: Path, token: str) -> list[str]:
    return [str(path) for path in root.rglob("*")
            if path.is_file() and not path.is_symlink()
            and (TOKEN.search(path.read_bytes()) or token.encode() in path.read_bytes())]


def test_a_failed_worker_token_read_leaves_no_token_anywhere(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-0"
    manager = swarm.leader()["address"]
    _refuse_worker_token(swarm, True)
    try:
        # The failure as it happens: the manager's token is read, the worker's is not.
        read = swarm.ssh(manager, "docker swarm join-token -q manager && "
                                  "docker swarm join-token -q worker", check=False)
        assert read.returncode == 1 and read.stdout.startswith("SWMTKN-1-"), read
        assert "injected failure" in read.stderr

        replaced = invoke("replace-node", worker, "--cluster", swarm.name, "--yes",
                          state_dir=swarm.state)
        rebuilt = invoke("rebuild", "--cluster", swarm.name, state_dir=swarm.state)
    finally:
        _refuse_worker_token(swarm, False)

    for result in (replaced, rebuilt):
        assert result.returncode not in (0, 10), result.stderr
        assert "injected failure of the worker token's read" in result.stderr  # that failure
        assert "SWMTKN-" not in result.stdout + result.stderr
    assert "Traceback" not in replaced.stderr + rebuilt.stderr
    assert "\nswarmforge: step 3/4 (terraform apply -replace" in replaced.stderr
    journal = json.loads((swarm.state / swarm.name / "journal.json").read_text())
    stopped = journal["replacement"]["stopped"]
    assert stopped.startswith("step 3/4 (terraform apply -replace") and "injected" in stopped
    report = json.loads((swarm.state / "_build" / swarm.name / "rebuild-report.json").read_text())
    assert report["result"] == "failed" and "injected failure" in report["error"]
    assert _files_holding_a_token(swarm.state, read.stdout.strip()) == []

    resumed = swarm.run("replace-node", worker, "--yes")  # the cause gone, it carries on
    assert resumed.returncode == 0, resumed.stderr
    assert_healthy(swarm, 1, 1)
    assert not (swarm.state / swarm.name / "journal.json").exists()


def test_ctrl_c_during_a_step_names_it_and_the_resume_command(swarm: Cluster) -> None:
    worker = f"{swarm.name}-worker-0"
    resume = f"invoke replace-node {worker} --cluster {swarm.name} --target local --yes"
    task = subprocess.Popen([*INVOKE, "replace-node", worker, "--cluster", swarm.name, "--yes"],
                            cwd=REPO, start_new_session=True, text=True,
                            env={**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state)},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert task.stderr is not None
    seen = []
    for line in task.stderr:  # until Terraform's step starts
        seen.append(line)
        if "[3/4] terraform apply -replace" in line:
            break
    else:
        raise AssertionError("".join(seen))
    time.sleep(0.5)  # Terraform is making the new host

    os.killpg(task.pid, signal.SIGINT)  # as a terminal's Ctrl-C does
    _, rest = task.communicate(timeout=300)
    stderr = "".join(seen) + rest

    assert task.returncode == 130, stderr
    said = re.fullmatch(r"swarmforge: interrupted during (step (\d)/4 \(.*\)); the journal keeps "
                        r"what was done: run `(.*)` to carry on", _the_one_line(stderr))
    assert said and said[3] == resume, stderr
    journal = json.loads((swarm.state / swarm.name / "journal.json").read_text())
    replacement = journal["replacement"]
    assert replacement["stopped"].startswith(f"{said[1]}: interrupted (Ctrl-C) at ")
    assert replacement["done"] == ["drain", "leave", "replace"][:int(said[2]) - 1]

    resumed = subprocess.run(resume.split(), cwd=REPO, capture_output=True, text=True,
                             timeout=600, check=False,
                             env={**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(swarm.state),
                                  "PATH": f"{Path(INVOKE[0]).parent}:{os.environ['PATH']}"})
    assert resumed.returncode == 0, resumed.stderr
    assert_healthy(swarm, 1, 1)
    assert not (swarm.state / swarm.name / "journal.json").exists()
