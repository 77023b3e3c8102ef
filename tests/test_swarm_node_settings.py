"""scripts/swarm-node.sh sets up the cluster's optional parts on a node (issue 20.3, 20.4).

terraform/aws's swarm step passes SWARM_NODE_LOG_GROUP/REGION (container_logs =
"cloudwatch") and SWARM_NODE_EFS (efs = true); the script writes daemon.json and
/etc/fstab under ROOT, restarts Docker and mounts. Here the real script runs
with ROOT a temporary directory; only the commands that would reach the machine
itself (systemctl, mount, mountpoint, docker, sleep) are stand-ins on PATH that
record how they were called, as tests/test_packer_provisioner.py does for
systemctl. That the sandbox, which passes none of these, still forms its swarm
with this script is what every sandbox test shows (tests/test_swarm_node_script.py).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "swarm-node.sh"
GROUP = "/swarmforge/demo/containers"
EFS = "fs-0123456789abcdef0.efs.eu-west-1.amazonaws.com"
AMI_DAEMON = {"log-driver": "json-file", "log-opts": {"max-file": "5", "max-size": "10m"},
              "live-restore": False}

# Each stand-in logs its name and arguments; `mount` fails its first $MOUNT_FAILS calls
# (a new mount target's DNS name not resolving yet), `mountpoint` answers $MOUNTED.
RECORDER = """#!/bin/bash
echo "$(basename "$0") $*" >>"$CALLS"
case "$(basename "$0")" in
  mount) (( $(grep -c '^mount ' "$CALLS") > ${MOUNT_FAILS:-0} )) ;;
  mountpoint) [[ "${MOUNTED:-no}" == yes ]] ;;
esac
"""
STAND_INS = ("systemctl", "mount", "mountpoint", "docker", "sleep")


class Node:
    """A node's ROOT and the calls the script made, over several runs."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "root"
        (self.root / "etc" / "docker").mkdir(parents=True)
        (self.root / "etc" / "docker" / "daemon.json").write_text(json.dumps(AMI_DAEMON))
        (self.root / "etc" / "fstab").write_text("LABEL=cloudimg-rootfs / ext4 defaults 0 1\n")
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in STAND_INS:
            (self.bin / name).write_text(RECORDER)
            (self.bin / name).chmod(0o755)
        self.calls_file = tmp_path / "calls"

    def run(self, env: dict[str, str], *, efs_utils: bool = False,
            **stand_in: str) -> subprocess.CompletedProcess[str]:
        self.calls_file.write_text("")
        if efs_utils:
            (self.bin / "mount.efs").write_text(RECORDER)
            (self.bin / "mount.efs").chmod(0o755)
        return subprocess.run(
            ["bash", str(SCRIPT), "configure"],
            env={"PATH": f"{self.bin}:/usr/bin:/bin", "ROOT": str(self.root),
                 "CALLS": str(self.calls_file), **stand_in, **env},
            capture_output=True, text=True, timeout=60, check=False)

    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines()

    def daemon(self) -> dict[str, object]:
        found: dict[str, object] = json.loads((self.root / "etc/docker/daemon.json").read_text())
        return found

    def fstab(self) -> list[str]:
        return (self.root / "etc/fstab").read_text().splitlines()


LOGS = {"SWARM_NODE_LOG_GROUP": GROUP, "SWARM_NODE_LOG_REGION": "eu-west-1"}


def test_cloudwatch_logs_set_the_awslogs_driver_once(tmp_path: Path) -> None:
    node = Node(tmp_path)

    first = node.run(LOGS)
    first_calls = node.calls()
    again = node.run(LOGS)

    assert first.returncode == 0, first.stderr
    options = node.daemon()["log-opts"]
    assert node.daemon()["log-driver"] == "awslogs"
    assert isinstance(options, dict)
    assert options["awslogs-group"] == GROUP and options["awslogs-region"] == "eu-west-1"
    assert options["tag"].endswith("/{{.Name}}") and options["mode"] == "non-blocking"
    assert "max-size" not in options  # a json-file option awslogs would refuse
    assert node.daemon()["live-restore"] is False  # the AMI's other settings stay
    assert first_calls[0] == "systemctl restart docker" and "docker info" in first_calls
    # The same settings again: nothing written, Docker not restarted.
    assert again.returncode == 0, again.stderr
    assert "already log to CloudWatch" in again.stdout
    assert node.calls() == []


def test_efs_is_in_fstab_once_and_mounted(tmp_path: Path) -> None:
    node = Node(tmp_path)
    mount_dir = node.root / "mnt" / "efs"

    first = node.run({"SWARM_NODE_EFS": EFS}, MOUNT_FAILS="2")
    first_calls = node.calls()
    again = node.run({"SWARM_NODE_EFS": EFS}, MOUNTED="yes")

    assert first.returncode == 0, first.stderr
    assert node.fstab() == [
        "LABEL=cloudimg-rootfs / ext4 defaults 0 1",
        f"{EFS}:/ /mnt/efs nfs4 nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,"
        "retrans=2,noresvport,_netdev 0 0",
    ]
    assert mount_dir.is_dir()
    # Retried while the name does not resolve, then mounted.
    assert [c for c in first_calls if c.startswith("mount ")] == [f"mount {mount_dir}"] * 3
    assert again.returncode == 0, again.stderr
    assert "already mounted" in again.stdout
    assert len(node.fstab()) == 2
    assert not [c for c in node.calls() if c.startswith("mount ")]


def test_efs_utils_mount_over_tls_and_replace_an_older_line(tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.run({"SWARM_NODE_EFS": EFS})

    done = node.run({"SWARM_NODE_EFS": EFS}, efs_utils=True)

    assert done.returncode == 0, done.stderr
    assert node.fstab()[1:] == ["fs-0123456789abcdef0:/ /mnt/efs efs _netdev,noresvport,tls 0 0"]


def test_without_settings_nothing_changes(tmp_path: Path) -> None:
    """What the sandbox runs: no setting, no file written, no command run."""
    node = Node(tmp_path)

    done = node.run({})

    assert done.returncode == 0, done.stderr
    assert node.daemon() == AMI_DAEMON
    assert len(node.fstab()) == 1
    assert node.calls() == []


@pytest.mark.parametrize(("env", "complaint"), [
    ({"SWARM_NODE_LOG_GROUP": "x;reboot", "SWARM_NODE_LOG_REGION": "eu-west-1"},
     "is no log group name"),
    ({"SWARM_NODE_LOG_GROUP": GROUP, "SWARM_NODE_LOG_REGION": "eu-west-1 --x"}, "is no AWS region"),
    ({"SWARM_NODE_EFS": "evil.example.com:/ /etc"}, "is no EFS DNS name"),
])
def test_bad_settings_are_refused_before_anything_changes(tmp_path: Path, env: dict[str, str],
                                                          complaint: str) -> None:
    node = Node(tmp_path)

    refused = node.run(env)

    assert refused.returncode == 1
    assert complaint in refused.stderr
    assert node.daemon() == AMI_DAEMON and len(node.fstab()) == 1
    assert node.calls() == []


def test_a_mount_that_never_works_fails_the_step(tmp_path: Path) -> None:
    node = Node(tmp_path)

    failed = node.run({"SWARM_NODE_EFS": EFS}, MOUNT_FAILS="1000")

    assert failed.returncode == 1
    assert f"cannot mount {EFS}" in failed.stderr
    assert len([c for c in node.calls() if c.startswith("mount ")]) == 30
