"""scripts/install-aws-helpers.sh, the bake's step for private images and EFS (issue 20.2).

Its apt installs run only on a build instance; here its docker CLI settings run
for real on a scratch home directory (the script sourced, its function called),
and its input checks run as the bake would call it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-aws-helpers.sh"


def use_ecr_helper(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'source "{SCRIPT}" && use_ecr_helper root "{home}"'],
                          capture_output=True, text=True, timeout=30, check=False)


def test_the_cli_takes_ecr_credentials_and_keeps_its_other_settings(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    config = tmp_path / ".docker" / "config.json"
    config.write_text(json.dumps({"auths": {"registry.example.com": {}}, "detachKeys": "ctrl-x"}))

    done = use_ecr_helper(tmp_path)
    written = config.stat()
    again = use_ecr_helper(tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(config.read_text()) == {"auths": {"registry.example.com": {}},
                                              "credsStore": "ecr-login", "detachKeys": "ctrl-x"}
    assert written.st_mode & 0o777 == 0o600
    assert again.returncode == 0, again.stderr
    assert config.stat().st_mtime_ns == written.st_mtime_ns  # in place already: not rewritten


def test_a_home_without_docker_settings_gets_them(tmp_path: Path) -> None:
    done = use_ecr_helper(tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / ".docker" / "config.json").read_text()) == {"credsStore": "ecr-login"}
    assert (tmp_path / ".docker").stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(("ssh_user", "complaint"), [
    ("", "SSH_USER must name the login user"),
    ("no-such-user-here", "SSH_USER 'no-such-user-here' does not exist"),
])
def test_the_inputs_are_checked_before_anything_is_installed(ssh_user: str, complaint: str) -> None:
    refused = subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "SSH_USER": ssh_user},
                             capture_output=True, text=True, timeout=30, check=False)

    assert refused.returncode == 2
    assert complaint in refused.stderr
