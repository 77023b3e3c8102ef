"""A cluster's Terraform working directory, and Terraform initialised in it.

Several clusters use one config in the repo, so each gets its own copy of it
(with the node scripts beside it) and its own ``.terraform`` and state: in the
cluster's dir, or in the state bucket under the cluster's own key.

Rendering and ``terraform init`` are done once per change: a stamp in the copy
records what they were made from (the config, the scripts, the backend, the CLI
config, the Terraform binary and its version) and what they left (the copy, its
lock file, the providers installed, the backend Terraform recorded). While both
are unchanged, the next command skips them; anything else renders and inits
anew. Should the two ever disagree all the same, Terraform itself refuses to
plan or apply in a dir whose backend or providers do not match its lock file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from packaging.version import Version

from swarmforge.backend import S3Backend, render_backend, render_backend_settings
from swarmforge.private_files import private_dirs, write_private
from swarmforge.settings import SCRIPTS_DIR, Settings
from swarmforge.terraform import BACKEND_CONFIG_FILE, ProgressSink, Terraform, required_version
from swarmforge.tools import OFFLINE_TERRAFORM, cli_config, find_terraform

STAMP = ".swarmforge-init.json"  # in the workdir: what the last render and init were made of


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
    come from this machine's offline mirror. Rendered and initialised only when something
    it depends on changed since the last time (the stamp)."""
    cluster_dir = settings.cluster_dir
    private_dirs(cluster_dir)
    workdir = cluster_dir / "terraform"
    stamp = _read_stamp(workdir)
    chosen = _terraform_binary(settings, config_dir, stamp.get("terraform") or {})
    binary, version = chosen["binary"], Version(chosen["version"])
    rc = cli_config(cluster_dir / "terraformrc", mirrored)
    tf = Terraform(binary, workdir, env={"TF_CLI_CONFIG_FILE": str(rc)},
                   progress=progress, log_file=cluster_dir / "terraform.log",
                   timeout=settings.terraform_timeout,
                   unlock=f"invoke unlock --terraform-lock {{id}} --cluster {settings.cluster} "
                          f"--target {settings.target}")
    backend_tf, backend_settings = _backend(settings, config_dir, version)
    sources = _digest([f"{binary} {version}", rc.read_text(), backend_tf or "",
                       backend_settings or "", *_sources(config_dir)])
    if stamp.get("sources") == sources and stamp.get("workdir") == _workdir_digest(workdir):
        if stamp.get("terraform") != chosen:  # the same binary, looked at anew (touched)
            _write_stamp(workdir, {**stamp, "terraform": chosen})
        return tf  # rendered and initialised from these very sources, and untouched since
    (workdir / STAMP).unlink(missing_ok=True)  # a failed init below leaves no stamp
    render_workspace(config_dir, workdir, backend_tf)
    tf.init(backend_settings)
    _write_stamp(workdir, {"terraform": chosen, "sources": sources,
                           "workdir": _workdir_digest(workdir)})
    return tf


def _terraform_binary(settings: Settings, config_dir: Path, known: dict[str, str]) -> dict[str, str]:
    """find_terraform's choice ({key, binary, version}): ``known`` (the stamp's) while the
    binaries it chooses from are the same files, so `terraform version` runs once per build."""
    needed = required_version(config_dir)
    candidates = ([settings.terraform_bin] if settings.terraform_bin
                  else [shutil.which("terraform") or "", str(OFFLINE_TERRAFORM)])
    key = " | ".join([str(needed), *(f"{c} {_identity(c)}" for c in candidates)])
    if known.get("key") == key and known.get("binary") and known.get("version"):
        return known
    binary, version = find_terraform(settings.terraform_bin, needed, f"terraform/{config_dir.name}",
                                     settings.terraform_timeout)
    return {"key": key, "binary": binary, "version": str(version)}


def _identity(command: str) -> str:
    """The file a command names, as (inode, size, mtime): another build is another file."""
    path = shutil.which(command) if command else None
    if not path:
        return "none"
    info = os.stat(path)
    return f"{os.path.realpath(path)} {info.st_ino} {info.st_size} {info.st_mtime_ns}"


def _sources(config_dir: Path) -> Iterator[str]:
    """What render_workspace copies: the config's .tf files and lock file, the scripts."""
    yield from _files(config_dir, [*config_dir.glob("*.tf"), *config_dir.glob(".terraform.lock.hcl")])
    yield from _files(SCRIPTS_DIR.parent, SCRIPTS_DIR.rglob("*"))


def _files(top: Path, paths: Iterable[Path]) -> Iterator[str]:
    """Each file of ``paths``, as its path below ``top`` and a digest of its bytes, in order."""
    for path in sorted(p for p in paths if p.is_file()):
        yield f"{path.relative_to(top)} {hashlib.sha256(path.read_bytes()).hexdigest()}"


def _workdir_digest(workdir: Path) -> str:
    """What render and init left in ``workdir``: the copy, the lock file, the backend as
    Terraform recorded it, and the providers it installed (names and sizes)."""
    providers = workdir / ".terraform" / "providers"
    if not providers.is_dir():
        return "not initialised"
    recorded = [workdir / name for name in (".terraform.lock.hcl", BACKEND_CONFIG_FILE,
                                            ".terraform/terraform.tfstate")]
    parts = [*_files(workdir, [*workdir.glob("*.tf"), *recorded]),
             *_files(workdir, (workdir / "scripts").rglob("*")),
             *(f"{p.relative_to(workdir)} {p.stat().st_size}" for p in sorted(providers.rglob("*"))
               if p.is_file())]
    return _digest(parts)


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _read_stamp(workdir: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((workdir / STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(workdir: Path, stamp: dict[str, Any]) -> None:
    write_private(workdir / STAMP, json.dumps(stamp, sort_keys=True))


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
