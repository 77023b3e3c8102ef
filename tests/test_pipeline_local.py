"""The whole pipeline on the local sandbox, for real: Terraform, sshd, dockerd, a real swarm.

One cluster is carried through its life (apply, re-apply, scale up, refused
scale down, destroy); a second one runs beside it on the offline Terraform
1.0.3 build and has its apply broken half-way (a host that never comes up),
then resumed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import OFFLINE_TERRAFORM, REPO, invoke, unique_cluster
from tests.leaks import ArgvWatcher, Poller, files_holding

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

SANDBOX = Path("/run/swarmforge")
# Docker's own storage (raft, images) is Docker's business; everything else is scanned.
DOCKER_OWN = ("data", "exec")


def status(cluster: str, state_root: Path) -> dict:
    result = invoke("status", "--cluster", cluster, "--json", state_dir=state_root)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def join_tokens(cluster: str, state_root: Path, manager_ip: str) -> list[str]:
    config = state_root / cluster / "ssh" / "config"
    out = subprocess.run(["ssh", "-F", str(config), manager_ip,
                          "docker swarm join-token -q manager; docker swarm join-token -q worker"],
                         capture_output=True, text=True, check=True).stdout
    tokens = out.split()
    assert len(tokens) == 2 and all(t.startswith("SWMTKN-1-") for t in tokens)
    return tokens


def assert_no_leak(cluster: str, state_root: Path, outputs: list[str], watcher: ArgvWatcher,
                   started: float) -> None:
    data = status(cluster, state_root)
    leader = next(n for n in data["nodes"] if n["manager_status"] == "leader")
    tokens = join_tokens(cluster, state_root, leader["address"])
    for text in outputs:
        assert "SWMTKN-1" not in text
    assert watcher.samples > 50 and watcher.seen == []
    leaked = files_holding(
        [state_root / cluster, SANDBOX / cluster, Path("/tmp"), REPO],
        tokens, newer_than=started, skip=(*DOCKER_OWN, ".venv", ".tools", ".git"))
    assert leaked == []


def destroy(cluster: str, state_root: Path) -> None:
    invoke("destroy", "--cluster", cluster, "--yes", state_dir=state_root)


def assert_nothing_left(cluster: str) -> None:
    assert not (SANDBOX / cluster).exists()
    assert f"sf-{cluster}-" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                  text=True).stdout
    assert str(SANDBOX / cluster) not in Path("/proc/self/mountinfo").read_text()
    assert f"swarmforge:{cluster}" not in subprocess.run(["iptables", "-S", "FORWARD"],
                                                         capture_output=True, text=True).stdout
    ours = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(SANDBOX / cluster).encode() in cmdline.read_bytes():
                ours.append(cmdline)
        except OSError:
            continue
    assert ours == []


@pytest.fixture(scope="module")
def cluster(state_root: Path):
    name = unique_cluster("sf")
    yield name
    destroy(name, state_root)


@pytest.fixture(scope="module")
def old_terraform_cluster(state_root: Path):
    name = unique_cluster("sf103")
    yield name
    destroy(name, state_root)


class TestOneClusterLife:
    def test_apply_builds_a_healthy_swarm_and_leaks_no_token(self, cluster: str,
                                                             state_root: Path,
                                                             tmp_path: Path) -> None:
        started = time.time()
        terraform, calls = recording_terraform(tmp_path)
        with ArgvWatcher() as watcher:
            result = invoke("apply", "--target", "local", "--cluster", cluster,
                            "--managers", "3", "--workers", "2", state_dir=state_root,
                            env={"INVOKE_SWARMFORGE_TERRAFORM_BIN": str(terraform)})
        assert result.returncode == 0, result.stderr
        assert f"apply of cluster '{cluster}' on the local target:" in result.stderr
        assert "managers: 3 (3 to create)" in result.stderr
        assert "image:    the sandbox's stock images (no local bake recorded yet)" in result.stderr
        assert f"state:    {state_root / cluster / 'terraform' / 'terraform.tfstate'}" in result.stderr
        # One host round: phase 1 makes every node, the first manager inits; no -target.
        assert "phase 1: 3 manager(s) and 2 worker(s); the first manager runs docker swarm init" \
            in result.stderr
        applies = [argv for argv in calls.read_text().splitlines() if argv.startswith("apply")]
        assert len(applies) == 2, applies
        assert all(" -parallelism=30 " in argv for argv in applies), applies  # the target's own
        assert not [argv for argv in calls.read_text().splitlines() if "-target" in argv]
        assert f"cluster '{cluster}' created: 3 managers, 2 workers, healthy" in result.stdout
        data = status(cluster, state_root)
        assert data["healthy"] is True
        roles = sorted((n["role"], n["manager_status"]) for n in data["nodes"])
        assert roles == [("manager", "leader"), ("manager", "reachable"),
                         ("manager", "reachable"), ("worker", None), ("worker", None)]
        assert len({n["hostname"] for n in data["nodes"]}) == 5
        assert all(n["status"] == "ready" and n["engine_version"] for n in data["nodes"])
        assert_no_leak(cluster, state_root, [result.stdout, result.stderr], watcher, started)

    def test_reapply_on_a_converged_cluster_changes_nothing(self, cluster: str,
                                                            state_root: Path) -> None:
        before = {n["id"] for n in status(cluster, state_root)["nodes"]}
        result = invoke("apply", "--cluster", cluster, "--managers", "3", "--workers", "2",
                        state_dir=state_root)
        assert result.returncode == 0, result.stderr
        assert "phase 1:  none: the swarm exists" in result.stderr  # the plan says so
        assert "==> phase 1" not in result.stderr
        assert "managers: 3 (3 exist)" in result.stderr
        assert "nothing to change" in result.stderr
        assert f"cluster '{cluster}' unchanged" in result.stdout
        assert {n["id"] for n in status(cluster, state_root)["nodes"]} == before

    def test_scaling_up_is_a_rerun_with_new_counts(self, cluster: str, state_root: Path) -> None:
        before = {n["id"] for n in status(cluster, state_root)["nodes"]}
        result = invoke("apply", "--cluster", cluster, "--managers", "5", "--workers", "3",
                        state_dir=state_root)
        assert result.returncode == 0, result.stderr
        assert "==> phase 1" not in result.stderr
        assert "managers: 5 (3 exist, 2 to create)" in result.stderr
        data = status(cluster, state_root)
        assert data["healthy"] is True
        assert sum(n["role"] == "manager" for n in data["nodes"]) == 5
        assert sum(n["role"] == "worker" for n in data["nodes"]) == 3
        assert before < {n["id"] for n in data["nodes"]}  # nobody replaced

    def test_scaling_down_is_refused_and_nothing_changes(self, cluster: str,
                                                         state_root: Path) -> None:
        before = status(cluster, state_root)["nodes"]
        result = invoke("apply", "--cluster", cluster, "--managers", "3", "--workers", "3",
                        state_dir=state_root)
        assert result.returncode != 0
        assert "refusing to scale down from 5 managers + 3 workers to 3 + 3" in result.stderr
        assert status(cluster, state_root)["nodes"] == before

    def test_a_second_cluster_beside_it_resumes_a_broken_phase_two_on_terraform_1_0(
            self, cluster: str, old_terraform_cluster: str, state_root: Path) -> None:
        other = old_terraform_cluster
        env = {"INVOKE_SWARMFORGE_TERRAFORM_BIN": str(OFFLINE_TERRAFORM)}
        started = time.time()
        killer = SshdKiller(SANDBOX / other / "w1" / "sshd.pid")
        with ArgvWatcher() as watcher, killer:
            broken = invoke("apply", "--cluster", other, "--managers", "1", "--workers", "2",
                            state_dir=state_root, env=env)
        assert killer.killed, "the test never got to stop worker 1's sshd"
        assert broken.returncode == 1
        assert "terraform apply failed" in broken.stderr
        # Every host comes up in phase 1 now: worker 1's fails there, the rest carries on.
        assert f"{other}-worker-1: sshd is not listening" in broken.stderr

        with ArgvWatcher() as watcher2:
            resumed = invoke("apply", "--cluster", other, "--managers", "1", "--workers", "2",
                             state_dir=state_root, env=env)
        assert resumed.returncode == 0, resumed.stderr
        # The swarm did not exist yet: phase 1 again, which makes the broken host anew.
        assert "null_resource.swarm_worker[1]: Destroying" in resumed.stderr
        assert f"cluster '{other}' created: 1 managers, 2 workers, healthy" in resumed.stdout
        watcher.seen += watcher2.seen
        assert_no_leak(other, state_root,
                       [broken.stdout, broken.stderr, resumed.stdout, resumed.stderr],
                       watcher, started)

        # Side by side: own networks, own nodes, both healthy.
        mine, theirs = status(cluster, state_root), status(other, state_root)
        assert mine["healthy"] and theirs["healthy"]
        assert len(mine["nodes"]) == 8 and len(theirs["nodes"]) == 3
        assert not {n["address"] for n in mine["nodes"]} & {n["address"] for n in theirs["nodes"]}
        assert all(n["hostname"].startswith(other) for n in theirs["nodes"])

    def test_a_join_broken_half_way_is_made_anew_on_the_next_apply(self, cluster: str,
                                                                    state_root: Path) -> None:
        # The host came up, its swarm step started, then it went dark: it never joined.
        killer = SshdKiller(SANDBOX / cluster / "w3" / "sshd.pid",
                            once=SANDBOX / cluster / "w3" / "provision" / "swarm-node.sh")
        with killer:
            broken = invoke("apply", "--cluster", cluster, "--managers", "5", "--workers", "4",
                            state_dir=state_root)
        assert killer.killed, "the test never got to stop worker 3's sshd"
        assert broken.returncode == 1
        assert f'swarm_join["{cluster}-worker-3"]' in broken.stderr

        resumed = invoke("apply", "--cluster", cluster, "--managers", "5", "--workers", "4",
                         state_dir=state_root)
        assert resumed.returncode == 0, resumed.stderr
        assert f"{cluster}-worker-3 never joined and does not answer over SSH: making it anew" \
            in resumed.stderr
        data = status(cluster, state_root)
        assert data["healthy"] and sum(n["role"] == "worker" for n in data["nodes"]) == 4

    def test_a_host_whose_key_changed_after_creation_gets_no_token(self, cluster: str,
                                                                   state_root: Path) -> None:
        """Issue 15.4 on the sandbox: the host CA pins every host, so a host that comes up
        and then presents another key is refused before anything is sent to it."""
        host = SANDBOX / cluster / "w4"
        started = time.time()
        with HostKeySwapper(host) as swapper:
            refused = invoke("apply", "--cluster", cluster, "--managers", "5", "--workers", "5",
                             state_dir=state_root)
        assert swapper.swapped, "the test never got to swap worker 4's host key"
        assert refused.returncode == 1
        assert f'swarm_join["{cluster}-worker-4"]' in refused.stderr
        assert "Traceback" not in refused.stderr
        # Nothing reached it: not the node script, not a join request, no token anywhere.
        assert sorted(p.name for p in (host / "provision").iterdir()) == []
        assert files_holding([host], ["SWMTKN-"], newer_than=started, skip=DOCKER_OWN) == []
        assert sum(n["role"] == "worker" for n in status(cluster, state_root)["nodes"]) == 4

        # It never joined and cannot be verified: the next apply makes it anew.
        fixed = invoke("apply", "--cluster", cluster, "--managers", "5", "--workers", "5",
                       state_dir=state_root)
        assert fixed.returncode == 0, fixed.stderr
        assert f"{cluster}-worker-4 never joined and does not answer over SSH" in fixed.stderr
        data = status(cluster, state_root)
        assert data["healthy"] and sum(n["role"] == "worker" for n in data["nodes"]) == 5

    def test_destroy_asks_first_then_leaves_nothing(self, cluster: str, old_terraform_cluster: str,
                                                    state_root: Path) -> None:
        unasked = invoke("destroy", "--cluster", cluster, state_dir=state_root, stdin="")
        assert unasked.returncode == 1 and "nothing destroyed" in unasked.stderr
        assert status(cluster, state_root)["healthy"]

        wrong_counts = invoke("status", "--cluster", cluster, "--managers", "3", state_dir=state_root)
        assert wrong_counts.returncode == 3 and "5 managers (want 3)" in wrong_counts.stdout

        # The second cluster's processes die with the session that made them;
        # destroy must still remove everything it left behind.
        kill_every_process_of(old_terraform_cluster)
        for name in (cluster, old_terraform_cluster):
            result = invoke("destroy", "--cluster", name, "--yes", state_dir=state_root)
            assert result.returncode == 0, result.stderr
            assert f"cluster '{name}' destroyed" in result.stdout
            assert_nothing_left(name)
            assert not (state_root / name).exists()
        again = invoke("destroy", "--cluster", cluster, "--yes", state_dir=state_root)
        assert again.returncode == 0 and "nothing to destroy" in again.stdout


def recording_terraform(folder: Path) -> tuple[Path, Path]:
    """A `terraform` that writes each argv to a file, then runs the real one: (it, the file)."""
    real = shutil.which("terraform") or str(OFFLINE_TERRAFORM)
    calls, wrapper = folder / "terraform-calls", folder / "terraform"
    wrapper.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{calls}"\nexec "{real}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, calls


def kill_every_process_of(cluster: str) -> None:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for netns in (line.split()[0] for line in namespaces.splitlines()):
        if netns.startswith(f"sf-{cluster}-"):
            pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                                  text=True).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)


class HostKeySwapper(Poller):
    """Gives a host a key its CA never signed the moment its sshd is up (and restarts it)."""

    def __init__(self, host: Path) -> None:
        super().__init__(interval=0.005)
        self.host = host
        self.swapped = False

    def poll(self) -> bool:
        try:
            pid = int((self.host / "sshd.pid").read_text())
        except (OSError, ValueError):
            return False
        key = self.host / "ssh_host_ed25519_key"
        key.unlink()
        Path(f"{key}.pub").unlink(missing_ok=True)
        Path(f"{key}-cert.pub").unlink(missing_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        os.kill(pid, signal.SIGHUP)  # sshd re-executes itself and loads the new key
        self.swapped = True
        return True


class SshdKiller(Poller):
    """Takes one host's sshd away the moment it appears (or once another file does): the
    listener and every session it has open, with what runs in them. The apply then fails
    half-way, whether or not Terraform's next connection was already made."""

    def __init__(self, pidfile: Path, once: Path | None = None) -> None:
        super().__init__(interval=0.005)
        self.pidfile = pidfile
        self.once = once  # wait for this file to appear first
        self.killed = False

    def poll(self) -> bool:
        if self.once and not self.once.exists():
            return False
        try:
            listener = int(self.pidfile.read_text())
            os.kill(listener, signal.SIGSTOP)  # it forks no new session while we look
        except (OSError, ValueError):
            return False
        for pid in [*descendants_of(listener), listener]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.killed = True
        return True


def descendants_of(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name may hold spaces and parentheses: the fields follow the last ')'.
            pid, ppid = int(stat.parent.name), int(stat.read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_a_cluster_whose_first_phase_failed_is_destroyed(state_root: Path) -> None:
    """Phase 1 fails before the state has a node to show (the first manager's sshd died as
    its host came up): destroy still removes every host the state holds."""
    name = unique_cluster("p1")
    try:
        killer = SshdKiller(SANDBOX / name / "m0" / "sshd.pid")
        with killer:
            broken = invoke("apply", "--cluster", name, "--managers", "1", "--workers", "0",
                            state_dir=state_root)
        assert killer.killed and broken.returncode == 1, broken.stderr
        result = invoke("destroy", "--cluster", name, "--yes", state_dir=state_root)
        assert result.returncode == 0, result.stderr
        assert f"cluster '{name}' destroyed" in result.stdout
        assert_nothing_left(name)
    finally:
        destroy(name, state_root)
