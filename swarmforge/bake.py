"""The bake use case: an Ubuntu AMI with Docker, built by Packer from packer/, with provenance.

Order: check the Docker version spec and Packer before anything runs, render the
var file, ``packer validate`` (after ``packer init`` where Packer has plugins),
``packer build``, then record the AMIs: in SSM (``/swarmforge/<cluster>/ami-id``,
in every region the AMI landed in) and in ``<state_dir>/_build/<cluster>/ami.json``,
beside the var file and Packer's full logs. Nothing is recorded unless every step
before succeeded, so a failed bake leaves the previous record in place.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from packaging.version import Version

from swarmforge import packer, process
from swarmforge.aws.amis import BakeRecord, ClusterAmis, bake_dir, record_path
from swarmforge.errors import ConfigError, PackerOutputError
from swarmforge.packer import BakeVariables, DockerPin, ValidationLevel
from swarmforge.progress import Progress
from swarmforge.settings import REGION, REPO_ROOT, Settings

TEMPLATE_DIR = REPO_ROOT / "packer"
SCRIPTS_DIR = REPO_ROOT / "scripts"
VAR_FILE = "bake.pkrvars.hcl"
#: Docker's current major series when this was written; pin tighter with --docker-version.
DEFAULT_DOCKER_VERSION = "27.*"


@dataclass(frozen=True)
class BakeOptions:
    """What the operator asked of this bake, beyond the cluster's settings."""

    docker_version: str = DEFAULT_DOCKER_VERSION
    ami_regions: tuple[str, ...] = ()  # regions to copy the AMI to
    dry_run: bool = False


@dataclass(frozen=True)
class BakeReport:
    """What a bake did; ``record`` is None after a dry run."""

    var_file: Path
    packer_version: Version
    validation: ValidationLevel
    record: BakeRecord | None = None
    record_path: Path | None = None


def bake(settings: Settings, options: BakeOptions, progress: Progress | None = None) -> BakeReport:
    """Validate, and unless ``options.dry_run``, build and record the AMI."""
    progress = progress or Progress()
    pin = _checked_inputs(options)
    # A dry run only validates, which the Packer Debian ships can do; a build needs the plugin.
    minimum = packer.MINIMUM_VERSION if options.dry_run else packer.BAKE_MINIMUM_VERSION
    version = packer.require_version(minimum)
    work_dir = bake_dir(settings)
    variables = _variables(settings, pin, options.ami_regions)
    var_file = packer.render_var_file(variables, work_dir / VAR_FILE)
    with progress.step(f"validating {TEMPLATE_DIR.name}/ with Packer {version}"):
        level = packer.validate(TEMPLATE_DIR, var_file, version=version)
    if options.dry_run:
        return BakeReport(var_file, version, level)
    with progress.step(f"baking the Docker AMI of cluster {settings.cluster!r} in {settings.region}"):
        result = packer.build(TEMPLATE_DIR, var_file, work_dir, _indented(progress),
                              version=version, init=False)
    record = _record(variables, result)
    with progress.step("recording the AMI in SSM and in " + str(record_path(settings))):
        _record_everywhere(settings, record)
    return BakeReport(var_file, version, level, record, record_path(settings))


def _indented(progress: Progress) -> packer.ProgressSink:
    # Packer's lines may hold line breaks ("AMIs were created:\nus-east-1: ami-..."):
    # each part is indented under the step.
    def show(line: str) -> None:
        for part in line.splitlines():
            progress.detail(part)

    return show


def _checked_inputs(options: BakeOptions) -> DockerPin:
    """The Docker pin, once every input is known good; else every problem at once."""
    problems = [f"ami_regions: {region!r} is not an AWS region name such as eu-west-1"
                for region in options.ami_regions if not REGION.match(region)]
    try:
        pin = packer.docker_pin(options.docker_version)
    except ConfigError as error:
        problems = error.problems + problems
    if problems:
        raise ConfigError(problems)
    return pin


def _variables(settings: Settings, pin: DockerPin, copy_to: tuple[str, ...]) -> BakeVariables:
    return BakeVariables(cluster=settings.cluster, region=settings.region,
                         git_commit=git_commit(REPO_ROOT), docker=pin,
                         scripts_dir=SCRIPTS_DIR, ami_regions=copy_to,
                         docker_log_max_size=settings.docker_log_max_size,
                         docker_log_max_file=settings.docker_log_max_file)


def _record(variables: BakeVariables, result: packer.BuildResult) -> BakeRecord:
    amis = result.amis
    missing = sorted({variables.region, *variables.copy_regions} - set(amis))
    if missing:
        raise PackerOutputError(f"Packer finished but reported no AMI in {', '.join(missing)} "
                                f"(it reported {amis or 'none'}); nothing recorded")
    return BakeRecord(
        cluster=variables.cluster, amis=dict(sorted(amis.items())),
        docker_version=variables.docker.spec, git_commit=variables.git_commit,
        packer_run_uuid=result.run_uuid,
        baked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        log=result.log_path,
    )


def _record_everywhere(settings: Settings, record: BakeRecord) -> None:
    # SSM first: when AWS refuses, this machine's record still names the last good bake.
    for region, ami_id in record.amis.items():
        ClusterAmis.of(settings, region).record_current(ami_id)
    record.save(record_path(settings))


def git_commit(repo: Path) -> str:
    """The commit the AMI is baked from, with ``-dirty`` when the work tree has changes."""
    if shutil.which("git") is None:
        return "unknown"
    # --exclude='*': always the full hash, never a tag-relative name.
    described = process.run(["git", "-C", str(repo), "describe", "--always", "--dirty",
                             "--abbrev=40", "--exclude=*"])
    return described.stdout.strip() if described.ok and described.stdout.strip() else "unknown"
