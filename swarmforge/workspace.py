"""A cluster's Terraform working directory, and Terraform initialised in it.

Several clusters use one config in the repo, so each gets its own copy of it
(with the node scripts beside it) and its own ``.terraform`` and state: in the
cluster's dir, or in the state bucket under the cluster's own key.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from packaging.version import Version

from swarmforge.backend import S3Backend, render_backend, render_backend_settings
from swarmforge.private_files import private_dirs, write_private
from swarmforge.settings import SCRIPTS_DIR, Settings
from swarmforge.terraform import ProgressSink, Terraform, required_version
from swarmforge.tools import cli_config, find_terraform


def render_workspace(config_dir: Path, dest: Path, backend_tf: str | None = None) -> Path:
    """Copy ``config_dir``'s .tf files and ``scripts/`` into ``dest``; returns ``dest``."""
    private_dirs(dest)
    for stale in dest.glob("*.tf"):
        stale.unlink()
    for source in [*config_dir.glob("*.tf"), *config_dir.glob(".terraform.lock.hcl")]:
        shutil.copy2(source, dest / source.name)
    shutil.rmtree(dest / "scripts", ignore_errors=True)
    shutil.copytree(SCRIPTS_DIR, dest / "scripts")
    if backend_tf:
        write_private(dest / "backend.tf", backend_tf)
    return dest


def initialised_terraform(settings: Settings, config_dir: Path, mirrored: tuple[str, ...],
                          progress: ProgressSink) -> Terraform:
    """Terraform (a version ``config_dir`` accepts) in the cluster's copy of ``config_dir``,
    ``terraform init`` done against the state the settings name; ``mirrored`` providers
    come from this machine's offline mirror."""
    cluster_dir = settings.cluster_dir
    private_dirs(cluster_dir)
    binary, version = find_terraform(settings.terraform_bin, required_version(config_dir),
                                     f"terraform/{config_dir.name}", settings.terraform_timeout)
    tf = Terraform(binary, cluster_dir / "terraform",
                   env={"TF_CLI_CONFIG_FILE": str(cli_config(cluster_dir / "terraformrc", mirrored))},
                   progress=progress, log_file=cluster_dir / "terraform.log",
                   timeout=settings.terraform_timeout,
                   unlock=f"invoke unlock --terraform-lock {{id}} --cluster {settings.cluster} "
                          f"--target {settings.target}")
    backend_tf, backend_settings = _backend(settings, config_dir, version)
    render_workspace(config_dir, tf.workdir, backend_tf)
    tf.init(backend_settings)
    return tf


def _backend(s: Settings, config_dir: Path, version: Version) -> tuple[str | None, str | None]:
    """(backend.tf, -backend-config settings) for a state bucket. A config that declares
    its own partial ``backend "s3" {}`` (terraform/aws) gets the settings only. Without a
    bucket, both None: the state stays in the cluster's own dir."""
    if not s.state_bucket:
        return None, None
    backend = S3Backend(bucket=s.state_bucket, key=s.state_key,
                        region=s.state_region or s.region, endpoint=s.state_endpoint,
                        dynamodb_table=s.state_lock_table)
    config = "".join(p.read_text() for p in config_dir.glob("*.tf"))
    if 'backend "s3" {}' in config:
        return None, render_backend_settings(backend, version)
    return render_backend(backend, version), None
