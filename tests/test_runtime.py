"""The per-user runtime dir (swarmforge.runtime): which one, and that it is ours alone.

Real dirs, real owners (chown needs root: those tests skip without it), real umasks.
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmforge import runtime
from swarmforge.runtime import SOCKET_PATH_MAX, RuntimeDirError, private_dir, runtime_dir
from swarmforge.ssh import CONTROL_ROOM, SshProfile

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to chown to another user")


@pytest.fixture
def short() -> Iterator[Path]:
    """A dir with a short path (pytest's own are long), standing in for /tmp."""
    with tempfile.TemporaryDirectory(prefix="sfrt-", dir="/tmp") as path:
        yield Path(path)


@pytest.fixture
def xdg(short: Path) -> Path:
    """An $XDG_RUNTIME_DIR as the XDG spec wants it: ours, mode 0700."""
    path = short / "xdg"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture(autouse=True)
def no_xdg(monkeypatch: pytest.MonkeyPatch, short: Path) -> None:
    """No $XDG_RUNTIME_DIR unless a test sets one; /tmp is ``short``, never the real one."""
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(runtime, "TMP", short / "tmp")
    (short / "tmp").mkdir()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# --- which dir ----------------------------------------------------------------------------


def test_xdg_runtime_dir_comes_first_when_it_is_usable(monkeypatch: pytest.MonkeyPatch, xdg: Path,
                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))

    chosen = runtime_dir(tmp_path / "state", room=CONTROL_ROOM)

    assert chosen == xdg / "swarmforge"
    assert not chosen.exists()  # choosing makes nothing
    assert private_dir(chosen) == chosen
    assert mode(chosen) == 0o700


def test_without_xdg_runtime_dir_the_state_dir_holds_it(short: Path) -> None:
    state_dir = short / "state"

    chosen = runtime_dir(state_dir, room=CONTROL_ROOM)

    assert chosen == state_dir / "_run"
    private_dir(chosen)
    assert mode(chosen) == 0o700
    assert mode(state_dir) == 0o700  # made here, so made private too


def test_a_relative_state_dir_is_taken_from_the_current_dir(
        monkeypatch: pytest.MonkeyPatch, short: Path) -> None:
    monkeypatch.chdir(short)

    assert runtime_dir("state") == short / "state" / "_run"


@pytest.mark.parametrize("why", ["mode 0755", "missing", "relative", "a file", "not ours"])
def test_an_xdg_runtime_dir_that_is_not_ours_alone_is_passed_over(
        monkeypatch: pytest.MonkeyPatch, xdg: Path, short: Path, why: str) -> None:
    if why == "not ours" and os.geteuid() != 0:
        pytest.skip("needs root, to chown to another user")
    given = {"mode 0755": xdg, "missing": short / "gone", "relative": Path("xdg"),
             "a file": short / "file", "not ours": xdg}[why]
    if why == "mode 0755":
        xdg.chmod(0o755)
    if why == "a file":
        given.write_text("")
    if why == "not ours":  # as after `su` without `-`: the other user's $XDG_RUNTIME_DIR
        os.chown(xdg, NOBODY, NOBODY)
    monkeypatch.chdir(short)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(given))

    assert runtime_dir(short / "state", room=CONTROL_ROOM) == short / "state" / "_run"


def test_a_state_dir_too_long_for_sockets_leaves_tmp(short: Path) -> None:
    state_dir = short / ("s" * 80)

    chosen = runtime_dir(state_dir, room=CONTROL_ROOM)

    assert chosen == short / "tmp" / f"swarmforge-{os.geteuid()}"
    assert len(os.fsencode(chosen)) + CONTROL_ROOM <= SOCKET_PATH_MAX


def test_an_xdg_runtime_dir_too_long_for_sockets_is_passed_over(
        monkeypatch: pytest.MonkeyPatch, short: Path) -> None:
    long_xdg = short / ("x" * 60)
    long_xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(long_xdg))

    assert runtime_dir(short / "state", room=CONTROL_ROOM) == short / "state" / "_run"


def test_the_real_tmp_is_the_last_resort(monkeypatch: pytest.MonkeyPatch, short: Path) -> None:
    monkeypatch.setattr(runtime, "TMP", Path("/tmp"))

    chosen = runtime_dir(short / ("s" * 80), room=CONTROL_ROOM)

    assert chosen == Path(f"/tmp/swarmforge-{os.geteuid()}")


def test_no_dir_short_enough_is_one_clear_error(short: Path) -> None:
    with pytest.raises(RuntimeDirError, match="no runtime dir leaves 200 bytes for a socket path"):
        runtime_dir(short / "state", room=200)


# --- ours alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_every_dir_made_is_0700_whatever_the_umask(short: Path, umask: int) -> None:
    state_dir = short / "a" / "state"
    root = runtime_dir(state_dir)
    control = root / "ssh-12345678"
    old = os.umask(umask)
    try:
        private_dir(control, root=root)
    finally:
        os.umask(old)

    for made in (short / "a", state_dir, root, control):
        assert mode(made) == 0o700, made


@needs_root
def test_a_dir_another_user_made_first_is_refused(short: Path) -> None:
    squatted = runtime_dir(short / ("s" * 80), room=CONTROL_ROOM)  # /tmp/swarmforge-<uid>
    squatted.mkdir(mode=0o777)
    os.chown(squatted, NOBODY, NOBODY)

    with pytest.raises(RuntimeDirError) as refused:
        private_dir(squatted / "ssh-12345678", root=squatted)

    assert str(refused.value).startswith(f"{squatted} belongs to ")
    assert "not to you" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert list(squatted.iterdir()) == []  # nothing made in it


@needs_root
def test_a_dir_below_the_runtime_dir_that_is_not_ours_is_refused(short: Path) -> None:
    root = private_dir(runtime_dir(short / "state"))
    planted = root / "ssh-12345678"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)

    with pytest.raises(RuntimeDirError, match=f"{planted} belongs to "):
        private_dir(planted, root=root)


def test_our_own_dir_open_to_others_is_refused_not_reused(short: Path) -> None:
    root = runtime_dir(short / "state")
    root.mkdir(parents=True, mode=0o700)
    root.chmod(0o755)

    with pytest.raises(RuntimeDirError, match=rf"{root} has mode 0755: .*; chmod 700 {root}$"):
        private_dir(root)
    assert mode(root) == 0o755  # not changed behind the user's back


def test_a_link_in_place_of_the_dir_is_refused(short: Path) -> None:
    elsewhere = short / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    root = runtime_dir(short / "state")
    root.parent.mkdir(mode=0o700)
    root.symlink_to(elsewhere)

    with pytest.raises(RuntimeDirError, match="is not a directory"):
        private_dir(root / "ssh-12345678", root=root)
    assert list(elsewhere.iterdir()) == []


def test_a_dir_that_cannot_be_made_is_one_clear_error(short: Path) -> None:
    (short / "file").write_text("")

    with pytest.raises(RuntimeDirError, match=r"cannot make .*/file/state: Not a directory"):
        private_dir(runtime_dir(short / "file" / "state"))


def test_a_path_outside_its_root_is_a_programming_error(short: Path) -> None:
    with pytest.raises(ValueError):
        private_dir(short / "a", root=short / "b")


# --- what ssh puts there --------------------------------------------------------------------


def test_ssh_control_sockets_fit_and_are_private(short: Path) -> None:
    state_dir = short / "state"
    ssh_dir = state_dir / "c" / "ssh"
    ssh_dir.mkdir(parents=True)
    profile = SshProfile(name="c", user="ubuntu", identity=ssh_dir / "id", known_hosts=ssh_dir / "kh",
                         config=ssh_dir / "config", state_dir=state_dir)

    profile.write_config()

    control = profile.control_dir
    assert control.parent == state_dir / "_run"
    assert f"  ControlPath {control}/%C\n" in profile.config.read_text()
    assert mode(control) == mode(control.parent) == 0o700
    # The longest name ssh binds there: %C (40 hex digits), then its temporary suffix.
    longest = control / ("c" * 40 + "." + "t" * 16)
    assert len(os.fsencode(longest)) <= SOCKET_PATH_MAX
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(longest))


def test_profiles_of_two_clusters_get_two_control_dirs(short: Path) -> None:
    def profile(cluster: str) -> SshProfile:
        ssh_dir = short / "state" / cluster / "ssh"
        return SshProfile(name=cluster, user="ubuntu", identity=ssh_dir / "id",
                          known_hosts=ssh_dir / "kh", config=ssh_dir / "config",
                          state_dir=short / "state")

    one, two = profile("one").control_dir, profile("two").control_dir

    assert one != two and one.parent == two.parent
