"""Spot workers (issue 20, part 5): on EC2's interruption notice a worker leaves the swarm
gracefully: drained by the leader, then it leaves, then its entry is removed.

The sandbox test runs the real scripts where systemd would on EC2: scripts/spot-notice.sh
inside a worker's namespace (its dockerd, its daemon.json), scripts/spot-reaper.sh inside
the manager's. The one AWS part, the instance metadata service, is tests/fakes/imds.py
(IMDSv2 only) on 169.254.169.254:80 inside the worker's namespace, so the poller runs with
its EC2 defaults; the test "sends" the notice by writing the file the fake serves. The
channel from the worker to the managers is the swarm's own (an engine label), so there is
no AWS-side channel to fake.

The rest reads the configuration as Terraform and Packer meet it: the spot block and its
variables, the units the image installs and the node script enables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from swarmforge.settings import Settings, validate
from swarmforge.ssh import SSH, SshProfile
from swarmforge.swarm import Swarm
from swarmforge.targets.aws.target import account_variables
from swarmforge.tools import find_terraform
from tests.conftest import invoke, unique_cluster
from tests.sandbox_swarm import SANDBOX, Cluster, start_web, wait_replicas
from tests.terraform_config import TERRAFORM, labelled, locals_of

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
UNITS = SCRIPTS / "systemd"
AWS = TERRAFORM / "aws"
NOTICE_LOG = "no task of the swarm runs here any more"


# --- on a real swarm --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(state_root: Path) -> Iterator[Cluster]:
    cluster = Cluster(unique_cluster("sp"), state_root)
    result = cluster.run("apply", "--managers", "1", "--workers", "2", timeout=900)
    assert result.returncode == 0, result.stderr
    yield cluster
    invoke("destroy", "--cluster", cluster.name, "--yes", state_dir=state_root)


def in_node(cluster: Cluster, key: str, argv: list[str], env: dict[str, str],
            output: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` inside sandbox host ``key`` (m0, w0) as its systemd would: in its
    network and UTS namespaces, talking to its own dockerd."""
    host = SANDBOX / cluster.name / key
    enter = ["nsenter", f"--net=/var/run/netns/sf-{cluster.name}-{key}", f"--uts={host / 'uts'}"]
    environment = {"PATH": os.environ["PATH"], "DOCKER_HOST": f"unix://{host / 'docker.sock'}",
                   **env}
    with output.open("ab") as log:
        return subprocess.Popen([*enter, *argv], env=environment, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def poll(what: str, done: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.5)


def requests(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def engine_labels(cluster: Cluster, key: str) -> list[str]:
    sock = SANDBOX / cluster.name / key / "docker.sock"
    out = subprocess.run(["docker", "-H", f"unix://{sock}", "info", "--format",
                          "{{json .Labels}}"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def swarm_of(cluster: Cluster) -> Swarm:
    ssh_dir = cluster.ssh_config.parent
    profile = SshProfile(name=cluster.name, user="unused", identity=ssh_dir / "unused",
                         known_hosts=ssh_dir / "unused", config=cluster.ssh_config)
    return Swarm(SSH(profile), [cluster.leader()["address"]])


@pytest.mark.sandbox
@pytest.mark.usefixtures("require_sandbox")
def test_a_notice_drains_the_worker_and_takes_it_out_of_the_swarm(
        cluster: Cluster, tmp_path: Path) -> None:
    worker = f"{cluster.name}-worker-0"
    host = SANDBOX / cluster.name / "w0"
    start_web(cluster)
    leader = cluster.leader()["address"]
    moved = cluster.ssh(leader, f"docker node ps {worker} -q --filter desired-state=running")
    assert moved.stdout.split(), "the worker must have tasks to move"

    # EC2's metadata address, inside the worker's namespace only.
    subprocess.run(["ip", "-n", f"sf-{cluster.name}-w0", "addr", "add", "169.254.169.254/32",
                    "dev", "lo"], check=True)
    notice, imds_log = tmp_path / "instance-action", tmp_path / "imds.log"
    processes = [
        in_node(cluster, "w0", ["python3", str(REPO / "tests/fakes/imds.py"), "169.254.169.254",
                                "80", str(notice), str(imds_log)], {}, tmp_path / "imds.out"),
        in_node(cluster, "m0", ["bash", str(SCRIPTS / "spot-reaper.sh"), "watch"],
                {"REAP_POLL": "1"}, tmp_path / "reaper.out"),
    ]
    # SPOT_ANNOUNCE_WAIT=0: this worker has tasks, so its leave waits for them to go, which
    # only the leader's drain makes happen; the 30 s floor is for a worker without any.
    poller = in_node(cluster, "w0", ["bash", str(SCRIPTS / "spot-notice.sh"), "watch"],
                     {"SPOT_POLL": "1", "SPOT_ANNOUNCE_WAIT": "0",
                      "DOCKER_CONFIG_FILE": str(host / "daemon.json"),
                      "DOCKER_PIDFILE": str(host / "docker.pid")}, tmp_path / "notice.out")
    processes.append(poller)
    try:
        # No notice yet (404): the poller asks, with an IMDSv2 token, and nothing happens.
        poll("two looks at the notice", lambda: sum(
            r["status"] == 404 for r in requests(imds_log)) >= 2, timeout=30)
        assert all(r["token"] for r in requests(imds_log) if r["method"] == "GET")
        assert cluster.node(worker)["status"] == "ready" and not engine_labels(cluster, "w0")

        when = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        notice.write_text(json.dumps({"action": "terminate", "time": when}))
        assert poller.wait(timeout=110) == 0, (tmp_path / "notice.out").read_text()
        said = (tmp_path / "notice.out").read_text()
        # Drained before it left: its tasks were gone, not cut off by the deadline.
        assert said.index(NOTICE_LOG) < said.index("left the swarm"), said

        poll("the entry removed", lambda: worker not in
             {n["hostname"] for n in cluster.status()["nodes"]})
    finally:
        for process in processes:
            stop(process)

    reaper = (tmp_path / "reaper.out").read_text()
    assert f"draining {worker}" in reaper and f"removed {worker}" in reaper, reaper
    # A pass made again (a restarted unit, another leader) finds nothing left to do.
    again = in_node(cluster, "m0", ["bash", str(SCRIPTS / "spot-reaper.sh"), "once"], {},
                    tmp_path / "again.out")
    assert again.wait(timeout=30) == 0 and not (tmp_path / "again.out").read_text()
    wait_replicas(cluster, leader)
    nodes_running = cluster.ssh(leader, "docker service ps web --filter desired-state=running "
                                        "--format '{{.Node}}'").stdout.split()
    assert len(nodes_running) == 6 and worker not in nodes_running
    # No Down entry; one worker short of what Terraform holds, which the next apply makes.
    assert cluster.status()["problems"] == ["1 workers (want 2)"]
    health = swarm_of(cluster).health(managers=1, workers=1)
    assert health.healthy, health.problems
    # And the label is off again: the machine, should it join again, is no departure.
    assert engine_labels(cluster, "w0") == []
    assert json.loads((host / "daemon.json").read_text())["labels"] == []


# --- the configuration as Terraform and Packer meet it -----------------------------------


def test_only_the_workers_can_be_spot_and_only_new_ones_change_market() -> None:
    resources = labelled(AWS, "resource")
    worker, manager = resources["aws_instance.swarm_worker"], resources["aws_instance.swarm_manager"]
    assert "dynamic" not in manager and "instance_market_options" not in manager
    (market,) = [body for block in worker["dynamic"] for name, body in block.items()
                 if name.strip('"') == "instance_market_options"]
    assert market["for_each"] == "${local.worker_market}"
    assert market["content"][0]["market_type"] == '"spot"'
    # A worker_spot change must not replace every worker at once: `invoke roll --all` does
    # it one at a time (the same as the instance type).
    assert "instance_market_options" in worker["lifecycle"][0]["ignore_changes"]
    spot = locals_of(AWS)["worker_market"]
    assert '"one-time"' in spot and '"terminate"' in spot and "var.worker_spot_max_price" in spot


def test_a_spot_worker_terminated_by_ec2_joins_again_as_a_new_instance() -> None:
    """The next apply recreates it (count), and its swarm step follows the instance id."""
    join = labelled(AWS, "resource")["null_resource.swarm_join"]
    assert "aws_instance.swarm_worker[each.value.index].id" in join["triggers"]["instance_id"]
    assert "SWARM_NODE_SPOT=1" in locals_of(AWS)["node_settings"]
    assert "var.worker_spot" in locals_of(AWS)["node_settings"]


@pytest.mark.parametrize(("override", "complaint"), [
    ([], None),
    (["worker_spot=true"], None),
    (["worker_spot=true", "worker_spot_max_price=0.0125"], None),
    (["worker_spot=true", "worker_spot_max_price=cheap"], "must be null or a price in USD"),
    (["worker_spot_max_price=0.0125"], "set worker_spot = true too"),
])
def test_the_spot_variables_refuse_what_ec2_would(tmp_path: Path, override: list[str],
                                                  complaint: str | None) -> None:
    terraform, _ = find_terraform(None, SpecifierSet(">=1.0"), "terraform/")
    shutil.copy(AWS / "variables.tf", tmp_path)  # needs no AWS provider
    required = ["cluster_name=demo", "ssh_private_key_path=/dev/null", "key_name=swarm",
                "swarm_ami_id=ami-0123456789abcdef0", 'allowed_ssh_cidrs=["203.0.113.7/32"]']
    plan = subprocess.run(
        [terraform, "plan", "-input=false", "-no-color",
         *[f"-var={value}" for value in [*required, *override]]],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull})
    if complaint is None:
        assert plan.returncode == 0, plan.stdout + plan.stderr
    else:
        assert plan.returncode != 0
        assert complaint in " ".join(plan.stderr.replace("│", " ").split())


def test_the_image_installs_what_the_units_run() -> None:
    build = (REPO / "packer/build.pkr.hcl").read_text()
    for unit in sorted(UNITS.glob("*.service")):
        started = re.search(r"^ExecStart=(\S+)", unit.read_text(), re.M)
        assert started, unit
        program = started.group(1)  # /usr/local/sbin/swarmforge-spot-notice
        script = program.rsplit("/", 1)[1].removeprefix("swarmforge-") + ".sh"
        assert (SCRIPTS / script).exists(), script
        assert f"/tmp/{script} {program}" in build, program
        assert f"${{var.scripts_dir}}/systemd/{unit.name}" in build and unit.name in build


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is missing")
def test_the_units_are_valid_systemd_units(tmp_path: Path) -> None:
    """systemd's own check, with ExecStart pointed at the scripts here (the image's paths)."""
    units = []
    for unit in sorted(UNITS.glob("*.service")):
        text = re.sub(r"/usr/local/sbin/swarmforge-(spot-\w+)", rf"{SCRIPTS}/\1.sh",
                      unit.read_text())
        (tmp_path / unit.name).write_text(text)
        units.append(str(tmp_path / unit.name))
    assert len(units) == 2
    check = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0 and not check.stdout + check.stderr, check.stderr


def test_a_node_whose_image_lacks_the_units_fails_before_it_joins(tmp_path: Path) -> None:
    """SWARM_NODE_SPOT=1 on an image baked without them: the join never starts, and the
    join request (which holds a token) is removed all the same."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    for tool in ("systemctl", "docker"):  # the machine's tools: a systemd with no such unit
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n'
                                    f'[ "$1" = cat ] && exit 1\nexit 0\n')
        (bin_dir / tool).chmod(0o755)
    request = tmp_path / "join.json"
    request.write_text("{}")
    run = subprocess.run(["bash", str(SCRIPTS / "swarm-node.sh"), "join", str(request)],
                         env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "SWARM_NODE_SPOT": "1",
                              "ROOT": str(tmp_path)},
                         capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "swarmforge-spot-notice.service is not in this image" in run.stderr
    assert not request.exists()
    assert "docker" not in calls.read_text().split()  # never got as far as the swarm


def test_the_spot_settings_reach_terraform_and_are_checked_first() -> None:
    spot = Settings(target="aws", cluster="demo", worker_spot=True, worker_spot_max_price="0.0125")
    assert validate(spot) == []
    variables = account_variables(spot)
    assert (variables["worker_spot"], variables["worker_spot_max_price"]) == ("true", "0.0125")
    # On demand, Terraform's own default holds: nothing is passed.
    assert not {"worker_spot", "worker_spot_max_price"} & set(account_variables(Settings()))
    assert "worker_spot_max_price: 'cheap' is not a price" in " ".join(validate(
        Settings(target="aws", worker_spot=True, worker_spot_max_price="cheap")))
    assert "set worker_spot too" in " ".join(validate(
        Settings(target="aws", worker_spot_max_price="0.0125")))
