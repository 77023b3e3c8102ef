"""What a run leaves in the state dir is the operator's alone whatever the umask, and
`status` reads a cluster without writing to it, even beside a running apply.

Real sandbox runs through the `invoke` CLI: an apply started under ``umask 000``,
then `status` in a loop while a second apply grows the cluster.
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import INVOKE, REPO, invoke, unique_cluster

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("require_sandbox")]

SANDBOX = Path("/run/swarmforge")
# What holds a key, a token or state, by name: never readable by anyone else.
SECRET_NAMES = ("id_ed25519", "host_ca", "authorized_keys", "known_hosts", "config",
                "terraform.tfstate", "terraform.tfstate.backup", "journal.json",
                "operation.lock", "terraform.log", "terraformrc", "sandbox.json")
# Copied from the repo (the config, the node scripts) or Terraform's provider cache:
# readable, as in the repo, but never writable by anyone else.
COPIED = ("scripts", ".terraform/providers")
# In a sandbox host's dir, which is 0700: Docker's own storage and sockets (Docker sets
# their modes), and the scripts Terraform's remote-exec uploads (it makes them 0777).
HOSTS_OWN = ("data", "exec", "docker.sock", "provision")


def apply_under_umask_000(cluster: str, state_dir: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(state_dir)}
    return subprocess.run(["bash", "-c", 'umask 000 && exec "$@"', "bash", *INVOKE, "apply",
                           "--cluster", cluster, "--yes", *flags],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
                          check=False)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A 1-manager cluster applied under umask 000, in a state dir the apply made."""
    name = unique_cluster("perm")
    state_dir = tmp_path_factory.mktemp("perm") / "state"
    result = apply_under_umask_000(name, state_dir, "--managers", "1", "--workers", "0")
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        yield name, state_dir
    finally:
        invoke("destroy", "--cluster", name, "--yes", state_dir=state_dir)


def modes(root: Path) -> Iterator[tuple[Path, int, bool]]:
    """(path, permission bits, is a dir) of ``root`` and everything below it; links skipped."""
    yield root, stat.S_IMODE(root.stat().st_mode), True
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            found = path.lstat()
            if not stat.S_ISLNK(found.st_mode):
                yield path, stat.S_IMODE(found.st_mode), stat.S_ISDIR(found.st_mode)


def test_under_umask_000_nothing_is_left_open_to_other_users(made: tuple[str, Path]) -> None:
    name, state_dir = made
    cluster_dir = state_dir / name
    open_to_others = []
    hosts = [p for p in (SANDBOX / name).iterdir() if p.is_dir() and p.name[:1] in "mw"]
    assert hosts, "the sandbox has no host"
    for host in hosts:
        assert stat.S_IMODE(host.stat().st_mode) == 0o700, host
    for path, mode, is_dir in [*modes(state_dir), *modes(SANDBOX / name)]:
        if any(host / own in (path, *path.parents) for host in hosts for own in HOSTS_OWN):
            continue
        copied = any(part in str(path.relative_to(path.anchor)) for part in COPIED)
        private = (is_dir and not copied) or path.name in SECRET_NAMES
        if mode & (0o077 if private else 0o022):
            open_to_others.append(f"{path} {mode:04o}")
    assert open_to_others == [], "\n".join(open_to_others)
    # What the check above would miss if a name changed: the ones that must be there.
    for held in ("ssh/id_ed25519", "ssh/host_ca", "ssh/known_hosts", "ssh/config",
                 "terraform/terraform.tfstate", "operation.lock", "terraform.log"):
        assert stat.S_IMODE((cluster_dir / held).stat().st_mode) == 0o600, held
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700


def listing(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under ``root`` with its inode, mode, size and mtime: any write shows."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = Path(dirpath, entry)
            s = path.lstat()
            found[str(path.relative_to(root))] = (s.st_ino, s.st_mode, s.st_size, s.st_mtime_ns)
    return found


def test_status_writes_nothing_of_the_cluster(made: tuple[str, Path]) -> None:
    name, state_dir = made
    before = listing(state_dir / name)

    result = invoke("status", "--cluster", name, state_dir=state_dir)

    assert result.returncode == 0, result.stderr
    assert "healthy" in result.stdout
    # No Terraform ran: its workspace was not rendered again, nor `terraform init` run.
    assert "preparing cluster" not in result.stderr
    assert listing(state_dir / name) == before


def test_status_in_a_loop_beside_an_apply_neither_fails_nor_harms_it(
        made: tuple[str, Path]) -> None:
    name, state_dir = made
    env = {**os.environ, "INVOKE_SWARMFORGE_STATE_DIR": str(state_dir)}
    growing = subprocess.Popen([*INVOKE, "apply", "--cluster", name, "--managers", "1",
                                "--workers", "1", "--yes"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    beside = []
    try:
        while growing.poll() is None:
            beside.append(invoke("status", "--cluster", name, "--json", state_dir=state_dir))
            time.sleep(0.2)
        out, err = growing.communicate(timeout=600)
    finally:
        if growing.poll() is None:
            growing.kill()

    assert growing.returncode == 0, err[-3000:]
    assert "1 managers, 1 workers, healthy" in out
    assert len(beside) >= 3, "status never ran beside the apply"
    for result in beside:
        # Healthy (0), not yet (3: the new worker is joining), or said busy in one line (4).
        assert result.returncode in (0, 3, 4), result.stderr
        assert "Traceback" not in result.stderr
        if result.returncode == 4:
            assert "is being changed" in result.stderr and result.stderr.count("\n") == 1
    final = invoke("status", "--cluster", name, "--json", state_dir=state_dir)
    assert final.returncode == 0, final.stderr
