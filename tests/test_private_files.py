"""0600 files and 0700 dirs whatever the umask, and children that make private files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmforge.private_files import open_private, private_dirs, write_private
from swarmforge.process import run


@pytest.fixture(autouse=True)
def umask_000() -> Iterator[None]:
    """The loosest umask an operator's shell can have."""
    before = os.umask(0)
    yield
    os.umask(before)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_dirs_made_are_0700_and_dirs_found_keep_their_mode(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # the operator's: not ours to close

    made = private_dirs(tmp_path / "state" / "cluster" / "ssh")

    assert [mode(p) for p in (made, made.parent, made.parent.parent)] == [0o700] * 3
    assert mode(tmp_path) == 0o755


def test_files_written_whole_are_0600_even_over_an_open_one(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("old\n")
    os.chmod(path, 0o666)

    write_private(path, "new\n")

    assert path.read_text() == "new\n" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts"]  # no partial left


def test_files_written_in_place_are_made_0600(tmp_path: Path) -> None:
    path = tmp_path / "terraform.log"
    path.write_text("before\n")
    os.chmod(path, 0o644)

    with open_private(path) as log:
        log.write("after\n")

    assert path.read_text() == "before\nafter\n" and mode(path) == 0o600


def test_what_a_child_makes_is_its_users_alone(tmp_path: Path) -> None:
    made = tmp_path / "made-by-a-child"

    result = run(["sh", "-c", f'umask; : > "{made}"; mkdir "{made}.d"'])

    assert result.stdout.strip() == "0077"
    assert mode(made) == 0o600 and mode(Path(f"{made}.d")) == 0o700
