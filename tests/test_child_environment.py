"""Join tokens reach only the child they are passed to (issue 17.1): a child never
inherits them from our environment, as the sandbox command's children (ip, ssh-keygen,
docker) would from Terraform's, and a sandbox host's daemons get an allow-list."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmforge.process import run, stream
from swarmforge.targets.local.host import daemon_env

TOKEN = "SWMTKN-1-" + "a" * 50 + "-" + "b" * 25


@pytest.fixture
def tokens_in_our_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TF_VAR_swarm_manager_token", TOKEN)
    monkeypatch.setenv("TF_VAR_swarm_worker_token", TOKEN)
    monkeypatch.setenv("SOME_COPY", f"join with {TOKEN}")
    monkeypatch.setenv("SWARMFORGE_TEST_KEPT", "kept")


@pytest.mark.usefixtures("tokens_in_our_environment")
def test_a_child_never_inherits_a_token_from_our_environment() -> None:
    ran = run(["env"]).stdout
    lines: list[str] = []
    stream(["env"], lines.append)

    for seen in (ran, "\n".join(lines)):
        assert "SWMTKN-" not in seen and "TF_VAR_swarm_" not in seen
        assert "SWARMFORGE_TEST_KEPT=kept" in seen  # the rest of ours is passed on


@pytest.mark.usefixtures("tokens_in_our_environment")
def test_a_token_passed_to_a_child_reaches_it() -> None:
    ran = run(["env"], env={"TF_VAR_swarm_worker_token": TOKEN}).stdout

    assert f"TF_VAR_swarm_worker_token={TOKEN}" in ran.splitlines()
    assert "TF_VAR_swarm_manager_token" not in ran


@pytest.mark.usefixtures("tokens_in_our_environment")
def test_a_sandbox_daemon_gets_only_what_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANG", "C.UTF-8")
    env = daemon_env(Path("/run/swarmforge/c/w0/home"), {"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"})

    assert set(env) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"}
    assert env["HOME"] == "/run/swarmforge/c/w0/home" and env["LANG"] == "C.UTF-8"
    assert env["PATH"] and env["DOCKER_SERVICE_PREFER_OFFLINE_IMAGE"] == "1"
