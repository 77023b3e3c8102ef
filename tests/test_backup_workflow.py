"""The nightly backup workflow: its shape, and its Backup step run for real in bash with an
`invoke` that exits as backup would (linted with the others in tests/test_workflows.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_workflows import SHELLCHECK, require_tool, run_step, steps, workflow


def backup_step() -> dict[str, Any]:
    (step,) = [s for s in steps("backup.yml") if s.get("id") == "backup"]
    return step


def test_backup_runs_nightly_and_by_hand_one_per_cluster() -> None:
    backup = workflow("backup.yml")
    (schedule,) = backup["on"]["schedule"]
    assert schedule["cron"] == "43 2 * * *"
    assert set(backup["on"]["workflow_dispatch"]["inputs"]) == {"cluster"}
    assert backup["permissions"] == {"contents": "read", "id-token": "write"}
    job = backup["jobs"]["backup"]
    assert job["if"] == "vars.SWARMFORGE_BACKUP_PAUSED != 'true'"
    assert job["concurrency"] == {"group": "swarmforge-backup-${{ matrix.cluster }}",
                                  "cancel-in-progress": False}
    assert job["env"]["INVOKE_SWARMFORGE_TARGET"] == "aws"
    (aws,) = [s for s in job["steps"]
              if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"  # OIDC, no stored keys


def test_every_run_script_is_plain_bash_that_shellcheck_passes(tmp_path: Path) -> None:
    require_tool(SHELLCHECK, "shellcheck")
    scripts = [step for step in steps("backup.yml") if "run" in step]
    assert len(scripts) == 3
    for index, step in enumerate(scripts):
        assert "${{" not in step["run"], step.get("name")  # values reach scripts through env:
        script = tmp_path / f"{index}.sh"
        script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
        checked = subprocess.run([str(SHELLCHECK), "-s", "bash", str(script)],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{step.get('name')}:\n{checked.stdout}"


@pytest.mark.parametrize(("code", "job_exit", "result", "annotation"), [
    (0, 0, "stored", ""),
    (4, 0, "busy: another operation holds the cluster", "::warning title=backup of prod skipped::"),
    (1, 1, "failed (exit 1)", "::error title=backup of prod::")])
def test_the_backup_step_fails_the_job_when_a_person_must_look(
        tmp_path: Path, code: int, job_exit: int, result: str, annotation: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "invoke"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\nexit {code}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(tmp_path / "output"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"), "CLUSTER": "prod"}
    ran = run_step(backup_step(), env, tmp_path)

    assert ran.returncode == job_exit, ran.stdout + ran.stderr
    assert (tmp_path / "output").read_text() == f"result={result}\n"
    assert (tmp_path / "summary").read_text() == f"### backup of `prod`: {result}\n"
    assert (tmp_path / "argv").read_text().split() == ["backup", "--cluster", "prod"]
    assert (annotation in ran.stdout) if annotation else "::" not in ran.stdout
