"""The health streak's second look is another manager's, at once (issue 18); apply's
first look, beside its plan, is one listing of the first manager.

A wait for health is over when the swarm looked healthy twice in a row. The second
look is asked of another manager: its `docker node ls` answers only while it has a
leader and quorum, which proves its own raft link. With no other manager, or none
that answers, it is the same manager's, ``interval`` later, as it always was.

The real ``Swarm`` over a fake `ssh` on PATH that is a swarm of FAKE_MANAGERS managers
and one worker (10.0.0.10+i, the managers' SSH addresses too); it logs which host was
asked what (not the `true` that opens a connection ahead). FAKE_FLUX: hosts whose first
node listing answers that the managers are electing a leader; FAKE_DEAD: hosts that are
not reached (ssh's own 255, logged "unreached").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmforge.ssh import SSH, SshProfile
from swarmforge.swarm import Swarm
from tests.fake_swarm import install_fake_ssh

FAKE_SSH = """#!{python}
import json, os, sys

host, command = sys.argv[-2], sys.argv[-1]
managers = int(os.environ["FAKE_MANAGERS"])
log = os.environ["FAKE_LOG"]


def said(what):
    with open(log, "a") as out:
        out.write(f"{{host}} {{what}}\\n")


if host in os.environ.get("FAKE_DEAD", "").split():
    if command != "true":  # not a connection opened ahead: in a thread, at any moment
        said("unreached")
    sys.stderr.write(f"ssh: connect to host {{host}} port 22: Connection refused\\n")
    sys.exit(255)
if command == "true":  # a shared connection opened ahead
    sys.exit(0)
if "http://docker/nodes" in command:
    flux = os.path.join(os.path.dirname(log), "flux-" + host)
    if host in os.environ.get("FAKE_FLUX", "").split() and not os.path.exists(flux):
        open(flux, "w").close()
        said("election")
        sys.stderr.write("Error response from daemon: rpc error: code = Unknown desc = "
                         "The swarm does not have a leader.\\n")
        sys.exit(1)
    said("list")
    nodes = [("manager", i) for i in range(managers)] + [("worker", 0)]
    prefix = "s"
{listing}
elif "docker info" in command:
    said("info")
{active_manager}
else:
    said("unexpected " + command)
    sys.exit(1)
"""


@pytest.fixture
def fake_swarm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake ssh on PATH; the log it writes."""
    install_fake_ssh(FAKE_SSH, tmp_path, monkeypatch)
    log = tmp_path / "asked.log"
    log.write_text("")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


def swarm_of(managers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Swarm:
    monkeypatch.setenv("FAKE_MANAGERS", str(managers))
    config = tmp_path / "ssh_config"
    config.write_text("")
    profile = SshProfile(name="looks", user="root", identity=tmp_path / "id",
                         known_hosts=tmp_path / "known_hosts", config=config)
    return Swarm(SSH(profile, attempts=1), [f"10.0.0.{10 + i}" for i in range(managers)])


def wait(swarm: Swarm, managers: int, rotated: list[str]) -> None:
    health = swarm.wait_healthy(managers, 1, timeout=30, on_healthy=rotated.append)
    assert health.healthy


def test_the_second_look_is_another_managers_after_the_rotation(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rotated: list[str] = []

    wait(swarm_of(3, tmp_path, monkeypatch), 3, rotated)

    assert fake_swarm.read_text().splitlines() == [
        "10.0.0.10 info", "10.0.0.10 list", "10.0.0.11 list"]
    assert rotated == ["10.0.0.10"]  # after the first look, before the second


def test_a_manager_that_is_not_reached_is_passed_over_for_the_next(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_DEAD", "10.0.0.11")

    wait(swarm_of(3, tmp_path, monkeypatch), 3, [])

    assert fake_swarm.read_text().splitlines() == [
        "10.0.0.10 info", "10.0.0.10 list", "10.0.0.11 unreached", "10.0.0.12 list"]


def test_an_election_seen_by_the_second_manager_starts_the_streak_again(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FLUX", "10.0.0.11")
    rotated: list[str] = []

    wait(swarm_of(3, tmp_path, monkeypatch), 3, rotated)

    assert fake_swarm.read_text().splitlines() == [
        "10.0.0.10 info", "10.0.0.10 list", "10.0.0.11 election",
        "10.0.0.10 list", "10.0.0.11 list"]
    assert rotated == ["10.0.0.10"]  # once


@pytest.mark.parametrize("managers, dead", [(1, ""), (3, "10.0.0.11 10.0.0.12")])
def test_with_no_other_manager_to_ask_the_same_one_looks_again(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        managers: int, dead: str) -> None:
    monkeypatch.setenv("FAKE_DEAD", dead)

    wait(swarm_of(managers, tmp_path, monkeypatch), managers, [])

    assert [line for line in fake_swarm.read_text().splitlines() if "list" in line] == [
        "10.0.0.10 list", "10.0.0.10 list"]


# -- apply's first look, beside its plan: the listing is the check -------------------------


def test_the_first_look_is_one_listing_of_the_first_manager(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    health, via = swarm_of(3, tmp_path, monkeypatch).first_look(3, 1)

    assert health.healthy and via == "10.0.0.10"
    assert fake_swarm.read_text().splitlines() == ["10.0.0.10 list"]  # no "info" first


@pytest.mark.parametrize("trouble, asked", [
    # Not reached: asking it again would wait out SSH's deadline once more.
    ("FAKE_DEAD", ["10.0.0.10 unreached", "10.0.0.11 info", "10.0.0.11 list"]),
    # In an election: asked again as active_manager asks, and it answers.
    ("FAKE_FLUX", ["10.0.0.10 election", "10.0.0.10 info", "10.0.0.10 list"]),
])
def test_a_first_manager_that_gives_no_listing_is_passed_over_only_if_not_reached(
        fake_swarm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trouble: str,
        asked: list[str]) -> None:
    monkeypatch.setenv(trouble, "10.0.0.10")

    health, via = swarm_of(3, tmp_path, monkeypatch).first_look(3, 1)

    assert health.healthy and via == asked[-1].split()[0]
    assert fake_swarm.read_text().splitlines() == asked
