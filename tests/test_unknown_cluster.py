"""A typo in --cluster makes nothing: every command but apply, on a cluster that does not
exist, says so in one line (naming the clusters that do) and leaves the state dir as it was.

Through the real `invoke` CLI, as an operator types it; the local target needs no
root for any of this, as nothing of the sandbox may be touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmforge.state_dir import clusters_in
from swarmforge.targets.local.sandbox import SANDBOX_ROOT
from tests.conftest import invoke, unique_cluster

COMMANDS = {
    "status": ["status"],
    "status --json": ["status", "--json"],
    "replace-node": ["replace-node", "worker-0", "--yes"],
    "roll": ["roll", "--all", "--yes"],
    "unlock": ["unlock"],
    "unlock --force": ["unlock", "--force", "--yes"],
    "unlock --terraform-lock": ["unlock", "--terraform-lock", "1234", "--yes"],
}


def listing(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``root`` with its mode, size and mtime: any change shows."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_mode, stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A state dir with two clusters and the shared dirs beside them."""
    state = tmp_path / "state"
    for made in ("alpha/terraform/terraform.tfstate", "beta/ssh/config",
                 "_build/alpha/ami.json", "_run/.keep"):
        (state / made).parent.mkdir(parents=True, exist_ok=True)
        (state / made).write_text("{}\n")
    (state / "empty").mkdir()  # a dir that holds nothing is no cluster
    return state


def test_the_clusters_here_are_the_dirs_that_hold_one(state_dir: Path) -> None:
    assert clusters_in(state_dir) == ["alpha", "beta"]
    assert clusters_in(state_dir / "missing") == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_on_a_cluster_that_does_not_exist_says_so_and_makes_nothing(
        state_dir: Path, command: str) -> None:
    typo = unique_cluster("typo")
    before = listing(state_dir)

    result = invoke(*COMMANDS[command], "--cluster", typo, "--target", "local",
                    state_dir=state_dir)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"swarmforge: no cluster {typo!r} in {state_dir}; "
                                     "clusters here: alpha, beta (only `invoke apply` makes one)")
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert listing(state_dir) == before
    assert not (SANDBOX_ROOT / typo).exists()


def test_destroying_a_local_cluster_that_never_was_changes_nothing(state_dir: Path) -> None:
    typo = unique_cluster("typo")
    before = listing(state_dir)

    result = invoke("destroy", "--yes", "--cluster", typo, "--target", "local",
                    state_dir=state_dir)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cluster {typo!r}: nothing to destroy"
    assert listing(state_dir) == before
    assert not (SANDBOX_ROOT / typo).exists()


def test_with_no_cluster_at_all_the_line_says_none(tmp_path: Path) -> None:
    result = invoke("status", "--cluster", "nothing-here", "--target", "local",
                    state_dir=tmp_path / "fresh")

    assert result.returncode == 2
    assert "clusters here: none" in result.stderr
    assert not (tmp_path / "fresh").exists()
