"""Backend rendering, and real Terraform (1.11 and 1.0) on the rendered S3 backend on moto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from swarmforge.backend import (
    S3Backend,
    hcl_string,
    render_backend,
    render_backend_settings,
)
from swarmforge.errors import ConfigError
from swarmforge.targets.aws import client
from swarmforge.targets.aws.state_bucket import ensure_lock_table, ensure_state_bucket
from swarmforge.tools import find_terraform

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
NULL_PROVIDER = "terraform-provider-null_v2.1.2_x4"

# A run that holds the state lock until told to let go: local-exec runs while
# Terraform holds the lock, so "started" means "locked".
HOLDER_CONFIG = """
variable "run" {
  type = string
}

resource "null_resource" "hold" {
  triggers = { run = var.run }

  provisioner "local-exec" {
    command = "touch \\"$HOLD_STARTED\\"; while [ ! -e \\"$HOLD_RELEASE\\" ]; do sleep 0.1; done"
  }
}
"""


# --- rendering ------------------------------------------------------------------


def test_s3_on_terraform_1_10_and_later_locks_with_a_lock_file() -> None:
    text = render_backend(S3Backend("state", "c/terraform.tfstate", REGION), Version("1.11.4"))

    assert text.startswith("# Rendered by swarmforge")
    assert 'backend "s3" {' in text
    assert _settings(text) == {
        "bucket": '"state"',
        "key": '"c/terraform.tfstate"',
        "region": f'"{REGION}"',
        "encrypt": "true",
        "use_lockfile": "true",
    }


def test_s3_with_an_endpoint_on_terraform_1_10_uses_the_new_spelling() -> None:
    backend = S3Backend("state", "k", REGION, endpoint="http://127.0.0.1:9", dynamodb_table="t")

    settings = _settings(render_backend(backend, Version("1.10.0")))

    assert settings["use_lockfile"] == "true"
    assert "dynamodb_table" not in settings  # lock files replace the table
    assert settings["s3"] == '"http://127.0.0.1:9"'  # inside endpoints = { ... }
    for flag in (
        "use_path_style",
        "skip_credentials_validation",
        "skip_requesting_account_id",
        "skip_metadata_api_check",
        "skip_region_validation",
    ):
        assert settings[flag] == "true", flag
    assert "endpoint" not in settings and "force_path_style" not in settings


def test_s3_before_terraform_1_6_uses_the_old_spelling_and_a_lock_table() -> None:
    backend = S3Backend("state", "k", REGION, endpoint="http://127.0.0.1:9", dynamodb_table="t")

    settings = _settings(render_backend(backend, Version("1.0.3")))

    assert settings["dynamodb_table"] == '"t"'
    assert settings["endpoint"] == settings["dynamodb_endpoint"] == '"http://127.0.0.1:9"'
    assert settings["force_path_style"] == "true"
    assert "use_lockfile" not in settings and "endpoints" not in settings


def test_s3_between_1_6_and_1_10_locks_with_the_table_in_the_new_spelling() -> None:
    backend = S3Backend("state", "k", REGION, endpoint="http://127.0.0.1:9", dynamodb_table="t")

    settings = _settings(render_backend(backend, Version("1.9.8")))

    assert settings["dynamodb_table"] == '"t"'
    assert settings["s3"] == settings["dynamodb"] == '"http://127.0.0.1:9"'
    assert settings["use_path_style"] == "true"


def test_a_1_10_release_candidate_counts_as_1_10() -> None:
    text = render_backend(S3Backend("state", "k", REGION), Version("1.10.0rc1"))

    assert "use_lockfile = true" in text


def test_old_terraform_without_a_lock_table_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"Terraform 1\.0\.3 cannot lock S3 state"):
        render_backend(S3Backend("state", "k", REGION), Version("1.0.3"))


def test_the_settings_alone_for_a_partial_backend_block() -> None:
    assert render_backend_settings(S3Backend("b", "k", REGION), Version("1.11.4")).startswith(
        'bucket  = "b"\n'
    )


def test_values_are_quoted_so_terraform_reads_them_back_unchanged() -> None:
    assert hcl_string('a "b" \\ ${c} %{d}\n') == '"a \\"b\\" \\\\ $${c} %%{d}\\n"'


def test_every_rendering_is_terraform_fmt_clean(tmp_path: Path) -> None:
    terraform, _ = find_terraform(None, SpecifierSet(">=1.0"), "a rendered backend")
    endpoint = S3Backend("b", "k", REGION, endpoint="http://127.0.0.1:9", dynamodb_table="t")
    for version in ("1.0.3", "1.9.8", "1.11.4"):
        (tmp_path / f"s3-{version}.tf").write_text(render_backend(endpoint, Version(version)))

    fmt = subprocess.run(
        [terraform, "fmt", "-check", "-diff", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull},
    )

    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


# --- real Terraform on the S3 backend ---------------------------------------------


@dataclass(frozen=True)
class Workdir:
    """One Terraform working directory wired to moto and the offline null provider."""

    terraform: Path
    path: Path
    env: dict[str, str]

    def run(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.terraform), *args],
            cwd=self.path,
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=180,
        )

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(self.terraform), *args],
            cwd=self.path,
            env={**self.env, **extra_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


# Lock files from 1.10 (1.11.4 on PATH), a DynamoDB table before (the offline 1.0.3 build).
@pytest.mark.parametrize("wanted", [">=1.10", "<1.10"])
def test_state_lives_in_the_bucket_and_a_held_lock_stops_a_second_run(
    wanted: str, endpoint: str, tmp_path: Path
) -> None:
    terraform, version = _terraform(wanted, tmp_path)
    backend = _state_backend(endpoint, version)
    workdir = _workdir(terraform, tmp_path, render_backend(backend, version))

    init = workdir.run("init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    first = workdir.run(
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-var",
        "run=1",
        HOLD_STARTED=str(tmp_path / "unused"),
        HOLD_RELEASE=str(tmp_path),
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert _stored_triggers(endpoint, backend) == {"run": "1"}

    started, release = tmp_path / "started", tmp_path / "release"
    holder = workdir.start(
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-var",
        "run=2",
        HOLD_STARTED=str(started),
        HOLD_RELEASE=str(release),
    )
    try:
        _wait_for(started, holder)
        assert _lock_is_held(endpoint, backend)
        second = workdir.run(
            "apply",
            "-auto-approve",
            "-input=false",
            "-no-color",
            "-lock-timeout=0s",
            "-var",
            "run=3",
            HOLD_STARTED=str(tmp_path / "unused"),
            HOLD_RELEASE=str(tmp_path),
        )
        release.touch()
        holder_output, _ = holder.communicate(timeout=120)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    assert second.returncode != 0
    assert "Error acquiring the state lock" in second.stdout + second.stderr
    assert holder.returncode == 0, holder_output
    assert _stored_triggers(endpoint, backend) == {"run": "2"}
    assert not _lock_is_held(endpoint, backend)


def test_settings_fill_a_partial_backend_block(endpoint: str, tmp_path: Path) -> None:
    """terraform/aws declares `backend "s3" {}`: the settings come with -backend-config."""
    terraform, version = _terraform(">=1.10", tmp_path)
    backend = _state_backend(endpoint, version)
    workdir = _workdir(terraform, tmp_path, 'terraform {\n  backend "s3" {}\n}\n')
    settings = tmp_path / "backend.s3.tfbackend"
    settings.write_text(render_backend_settings(backend, version))

    init = workdir.run("init", "-input=false", "-no-color", f"-backend-config={settings}")
    applied = workdir.run(
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        "-var",
        "run=7",
        HOLD_STARTED=str(tmp_path / "unused"),
        HOLD_RELEASE=str(tmp_path),
    )

    assert init.returncode == 0, init.stdout + init.stderr
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _stored_triggers(endpoint, backend) == {"run": "7"}


# --- helpers ---------------------------------------------------------------------


def _state_backend(endpoint: str, version: Version) -> S3Backend:
    """A fresh bucket (and lock table before 1.10) made by our own ensure_* code."""
    suffix = uuid.uuid4().hex[:10]
    bucket = f"swarmforge-tfstate-{suffix}"
    s3 = client("s3", REGION, endpoint)
    ensure_state_bucket(s3, bucket, REGION)
    # moto serves plain HTTP, and it enforces the bucket's TLS-only policy (see
    # test_state_bucket.py): lift it here so that Terraform may talk to it at all.
    s3.delete_bucket_policy(Bucket=bucket)
    table = None
    if version.release < (1, 10):
        table = f"swarmforge-locks-{suffix}"
        ensure_lock_table(client("dynamodb", REGION, endpoint), table, REGION)
    return S3Backend(bucket, f"clusters/{suffix}/terraform.tfstate", REGION, endpoint, table)


def _workdir(terraform: Path, tmp_path: Path, backend_tf: str) -> Workdir:
    config = tmp_path / "config"
    config.mkdir()
    (config / "backend.tf").write_text(backend_tf)
    (config / "main.tf").write_text(HOLDER_CONFIG)
    env = {
        **os.environ,
        **_fake_aws_env(),
        "CHECKPOINT_DISABLE": "1",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": str(_cli_config(tmp_path)),
        "TF_DATA_DIR": str(tmp_path / "tf-data"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TF_PLUGIN_CACHE_DIR"):
        env.pop(name, None)
    return Workdir(terraform, config, env)


def _cli_config(tmp_path: Path) -> Path:
    """A filesystem mirror holding only hashicorp/null 2.1.2: Terraform downloads nothing."""
    mirror = tmp_path / "mirror"
    target = mirror / "registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
    target.mkdir(parents=True)
    shutil.copy2(_null_provider(), target / NULL_PROVIDER)
    (target / NULL_PROVIDER).chmod(0o755)
    path = tmp_path / "terraform.rc"
    path.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{mirror}"\n  }}\n}}\n'
    )
    return path


def _terraform(wanted: str, tmp_path: Path) -> tuple[Path, Version]:
    """A Terraform binary whose version is in ``wanted``, copied so it can be made executable."""
    for candidate in _terraform_candidates():
        if not candidate.is_file():
            continue
        copy = tmp_path / "bin" / "terraform"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy2(candidate, copy)
        copy.chmod(0o755)
        version = _terraform_version(copy)
        if version in SpecifierSet(wanted):
            return copy, version
    pytest.skip(f"no Terraform {wanted} found (run scripts/setup-host.sh)")


def _terraform_candidates() -> list[Path]:
    on_path = shutil.which("terraform")
    return [
        *([Path(on_path)] if on_path else []),
        REPO / ".tools/terraform/terraform",
    ]


def _terraform_version(terraform: Path) -> Version:
    shown = subprocess.run(
        [str(terraform), "version", "-json"],
        capture_output=True,
        text=True,
        env={**os.environ, "CHECKPOINT_DISABLE": "1", "TF_CLI_CONFIG_FILE": os.devnull},
        check=True,
    )
    return Version(json.loads(shown.stdout)["terraform_version"])


def _null_provider() -> Path:
    candidates = [
        *sorted(
            REPO.glob(f".tools/providers/registry.terraform.io/hashicorp/null/*/*/{NULL_PROVIDER}")
        ),
        Path(sys.prefix) / "lib" / NULL_PROVIDER,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.skip("no hashicorp/null 2.1.2 provider binary found (run scripts/setup-host.sh)")


def _fake_aws_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def _wait_for(started: Path, holder: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not started.exists():
        if holder.poll() is not None:
            output = holder.stdout.read() if holder.stdout else ""
            pytest.fail(f"the lock-holding apply ended early ({holder.returncode}):\n{output}")
        if time.monotonic() > deadline:
            pytest.fail("the lock-holding apply never reached its provisioner")
        time.sleep(0.05)


def _stored_triggers(endpoint: str, backend: S3Backend) -> dict[str, str]:
    """The null_resource's triggers, read from the state object in the bucket."""
    body = client("s3", REGION, endpoint).get_object(Bucket=backend.bucket, Key=backend.key)["Body"]
    state = json.loads(body.read())
    (resource,) = [r for r in state["resources"] if r["type"] == "null_resource"]
    triggers: dict[str, str] = resource["instances"][0]["attributes"]["triggers"]
    return triggers


def _lock_is_held(endpoint: str, backend: S3Backend) -> bool:
    """Where the rendered backend told Terraform to lock: a lock file, or a table item."""
    if backend.dynamodb_table is None:
        s3 = client("s3", REGION, endpoint)
        listed = s3.list_objects_v2(Bucket=backend.bucket, Prefix=f"{backend.key}.tflock")
        return bool(listed.get("KeyCount"))
    dynamodb = client("dynamodb", REGION, endpoint)
    lock_id = {"LockID": {"S": f"{backend.bucket}/{backend.key}"}}
    item: dict[str, Any] = dynamodb.get_item(TableName=backend.dynamodb_table, Key=lock_id)
    return "Item" in item


def _settings(text: str) -> dict[str, str]:
    """``name = value`` lines of a rendered backend, comments and braces left out."""
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {
        name.strip(): value.strip() for name, value in pairs if not name.strip().startswith("#")
    }
