"""Swarm autolock on a real sandbox swarm of 3 managers (issue 19.3).

`apply --autolock` turns it on and puts the key in the store alone; a manager whose Docker
restarts (stopped and started as a reboot does, or by a backup) comes back locked, and
the pipeline unlocks it with the stored key: status, backup and apply, after a rotation
with the new key, and a manager that was down across the rotation with the previous one. Without a key in the
store the error names the command that stores it. Throughout, the key is in no output,
argv, log, journal or file outside the store.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmforge.autolock import PREVIOUS_KEPT
from swarmforge.settings import REPO_ROOT, Settings
from swarmforge.targets.local.host import Host
from swarmforge.targets.local.sandbox import SandboxLayout
from swarmforge.targets.local.system import alive, pid_from_file
from swarmforge.targets.local.unlock_key_file import UnlockKeyFile
from swarmforge.unlock_keys import UnlockKeys
from tests.conftest import unique_cluster
from tests.leaks import ArgvWatcher, files_holding
from tests.sandbox_swarm import SANDBOX, Cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

STARTED = time.time()


class Locked(Cluster):
    """The cluster, with what the tests keep of it: every output, the keys seen."""

    outputs: list[str]
    keys: set[str]
    store: UnlockKeyFile

    def invoke(self, *args: str) -> tuple[int, str, str]:
        result = self.run(*args)
        self.outputs += [result.stdout, result.stderr]
        return result.returncode, result.stdout, result.stderr

    def stored(self) -> UnlockKeys:
        keys = self.store.get()
        assert keys is not None, f"{self.store.where} holds no key"
        self.keys |= {key.value for key in keys.candidates()}
        return keys

    def swarm_key(self, via: str) -> str:
        """The key as the swarm has it, read by the test (kept in memory only)."""
        key = self.ssh(via, "docker swarm unlock-key -q").stdout.strip()
        self.keys.add(key)
        return key

    def host(self, hostname: str) -> Host:
        return Host.named(SandboxLayout.load(SANDBOX / self.name), hostname)

    def followers(self) -> list[dict]:
        return sorted((n for n in self.status()["nodes"] if n["manager_status"] == "reachable"),
                      key=lambda n: n["hostname"])

    def state_of(self, address: str) -> str:
        return self.ssh(address, "docker info --format '{{.Swarm.LocalNodeState}}'",
                        check=False).stdout.strip()

    def restart(self, node: dict) -> None:
        """Docker on ``node`` stopped and started, as a reboot does; back locked."""
        self.stop_docker(node)
        self.host(node["hostname"]).restart_docker()
        self.wait_state(node["address"], "locked")

    def stop_docker(self, node: dict) -> None:
        pid = pid_from_file(self.host(node["hostname"]).dir / "docker.pid")
        assert pid
        os.kill(pid, signal.SIGTERM)  # as a shutdown stops it: Docker's own clean exit
        deadline = time.monotonic() + 60
        while alive(pid):
            assert time.monotonic() < deadline, "dockerd did not stop"
            time.sleep(0.1)

    def wait_state(self, address: str, wanted: str) -> None:
        deadline = time.monotonic() + 60
        while (state := self.state_of(address)) != wanted:
            assert time.monotonic() < deadline, f"{address} is {state}, never {wanted}"
            time.sleep(0.2)

    def wait_healthy(self) -> dict:
        deadline = time.monotonic() + 90
        while not (status := self.status())["healthy"]:
            assert time.monotonic() < deadline, status["problems"]
            time.sleep(0.5)
        return status


@pytest.fixture(scope="module")
def swarm(state_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locked]:
    xdg = tmp_path_factory.mktemp("xdg-state")  # the key file's home: outside state and repo
    cluster = Locked(unique_cluster("al"), state_root, {"XDG_STATE_HOME": str(xdg)})
    cluster.outputs, cluster.keys = [], set()
    cluster.store = UnlockKeyFile(Settings(cluster=cluster.name, state_dir=str(state_root)),
                                  root=xdg / "swarmforge" / "unlock-keys")
    with ArgvWatcher(interval=0.05) as watcher:
        try:
            code, _, err = cluster.invoke("apply", "--managers", "3", "--workers", "0",
                                            "--autolock", "--yes")
            assert code == 0, err
            yield cluster
        finally:
            cluster.invoke("destroy", "--yes")
    assert watcher.samples > 100 and watcher.seen == []
    assert cluster.store.get() is None  # destroy removed it with the swarm


def test_apply_turns_autolock_on_and_keeps_the_key_in_the_store(swarm: Locked) -> None:
    assert f"swarm autolock on: the unlock key is kept in {swarm.store.where}" in swarm.outputs[0]
    leader = next(n for n in swarm.status()["nodes"] if n["manager_status"] == "leader")
    autolock = swarm.ssh(leader["address"], "docker info --format "
                         "'{{json .Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}'")
    assert autolock.stdout.strip() == "true"
    assert swarm.stored() == UnlockKeys(swarm.stored().current)  # no previous key yet
    assert swarm.stored().current.value == swarm.swarm_key(leader["address"])
    code, out, _ = swarm.invoke("unlock-key")
    assert code == 0 and f"the unlock key is kept in {swarm.store.where}" in out


def test_a_restarted_manager_is_locked_and_status_unlocks_it(swarm: Locked) -> None:
    follower = swarm.followers()[0]
    swarm.restart(follower)
    code, _, err = swarm.invoke("status")
    assert code in (0, 3), err
    assert f"unlocked {follower['address']} (swarm autolock) with the current key" in err
    assert swarm.state_of(follower["address"]) == "active"
    swarm.wait_healthy()


def test_a_backup_unlocks_the_manager_it_stopped(swarm: Locked) -> None:
    code, out, err = swarm.invoke("backup")  # a follower's Docker stopped for the copy
    assert code == 0, err
    source = next(n for n in swarm.followers() if n["hostname"] in out)
    assert f"unlocked {source['address']} (swarm autolock) with the current key" in err
    assert "autolocked: `invoke restore` cannot restore it (moby/moby#36852)" in out
    swarm.wait_healthy()


def test_a_manager_down_across_a_rotation_takes_the_previous_key(swarm: Locked) -> None:
    down, up = swarm.followers()
    before = swarm.stored().current
    swarm.stop_docker(down)  # 2 of 3 managers: the rotation goes on without it
    code, out, err = swarm.invoke("unlock-key", "--rotate")
    assert code == 0, err
    assert "rotated the key" in out and "the previous key too" in out
    rotated = swarm.stored()
    assert rotated.previous == before and rotated.current != before
    assert rotated.current.value == swarm.swarm_key(up["address"])
    swarm.host(down["hostname"]).restart_docker()  # it never saw the new key
    swarm.wait_state(down["address"], "locked")
    code, _, err = swarm.invoke("status")
    assert f"unlocked {down['address']} (swarm autolock) with the previous key" in err
    swarm.wait_healthy()
    swarm.restart(up)  # up across the rotation: the new key is its key
    code, _, err = swarm.invoke("apply", "--managers", "3", "--workers", "0", "--yes")
    assert code == 0, err
    assert f"unlocked {up['address']} (swarm autolock) with the current key" in err


def test_the_previous_key_is_forgotten_once_no_manager_needs_it(swarm: Locked) -> None:
    keys = swarm.stored()
    assert keys.previous is not None
    code, out, _ = swarm.invoke("unlock-key")  # every manager unlocked, but too soon
    assert code == 0 and "forgot" not in out and swarm.stored() == keys
    settled = time.time() - PREVIOUS_KEPT - 1  # the store as it is 5 minutes on
    swarm.store.put(UnlockKeys(keys.current, keys.previous, settled))
    code, out, err = swarm.invoke("unlock-key")
    assert code == 0 and "forgot the previous key" in out, err
    assert swarm.stored() == UnlockKeys(keys.current)


def test_without_a_stored_key_the_error_names_the_command_that_stores_it(swarm: Locked) -> None:
    follower = swarm.followers()[0]
    swarm.stored()
    swarm.store.delete()  # as on a machine that never held it
    swarm.restart(follower)
    code, _, err = swarm.invoke("status")
    assert code != 0
    assert f"manager {follower['address']} is locked" in err
    assert f"`invoke unlock-key --cluster {swarm.name} --target local` stores" in err
    code, out, err = swarm.invoke("unlock-key")  # reads the key from an active manager
    assert code == 0 and "stored the swarm's key, read from a manager" in out, err
    code, _, err = swarm.invoke("status")
    assert f"unlocked {follower['address']} (swarm autolock) with the current key" in err
    swarm.wait_healthy()


def test_the_key_is_nowhere_but_the_store(swarm: Locked) -> None:
    swarm.stored()
    assert len(swarm.keys) == 2  # the first key and the rotated one
    for text in swarm.outputs:
        assert "SWMKEY-" not in text and "SWMTKN-" not in text
    leaked = files_holding([swarm.state / swarm.name, SANDBOX / swarm.name, Path("/tmp"), REPO_ROOT],
                           swarm.keys, newer_than=STARTED,
                           skip=(".venv", ".tools", ".git", swarm.store.path.name))
    assert leaked == []
    journal = swarm.state / swarm.name
    assert any(journal.iterdir())  # the scan was not of nothing


def test_disable_turns_autolock_off_and_empties_the_store(swarm: Locked) -> None:
    code, out, err = swarm.invoke("unlock-key", "--disable")
    assert code == 0 and "turned autolock off" in out, err
    assert swarm.store.get() is None
    follower = swarm.followers()[0]
    swarm.stop_docker(follower)
    swarm.host(follower["hostname"]).restart_docker()
    swarm.wait_state(follower["address"], "active")  # comes back unlocked by itself
    assert swarm.wait_healthy()["healthy"]


def test_restore_refuses_an_autolocked_swarm(swarm: Locked) -> None:
    """Refused by the backup's manifest, though autolock is off by now, and before the
    quorum is looked at: whatever it is, no restore can work."""
    code, out, err = swarm.invoke("restore", "--from-backup", "latest", "--yes")
    assert code != 0 and "refusing to restore: the swarm is autolocked" in err, out + err
    assert "moby/moby#36852" in err
    assert swarm.wait_healthy()["healthy"]  # nothing was touched
