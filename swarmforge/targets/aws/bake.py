"""The aws target's bake: an Ubuntu AMI with Docker, built by Packer from packer/, with provenance.

Order: check the Docker version spec and Packer before anything runs, render the
var file, ``packer validate`` (after ``packer init`` where Packer has plugins),
``packer build``, then record the AMIs: in SSM (``/swarmforge/<cluster>/ami-id``,
in every region the AMI landed in) and in ``<state_dir>/_build/<cluster>/ami.json``,
beside the var file and Packer's full logs. Nothing is recorded unless every step
before succeeded, so a failed bake leaves the previous record in place.

The build and the record hold the cluster's lock (the lease in S3, lease.py): a
prune meanwhile could deregister what a roll is about to launch, and a roll
meanwhile would launch whichever AMI was current at its start. A dry run changes
nothing another operation reads, and takes no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from swarmforge import packer
from swarmforge.errors import ConfigError, PackerOutputError
from swarmforge.operation import OperationStore
from swarmforge.packer import BakeVariables, DockerPin, ValidationLevel
from swarmforge.progress import Progress
from swarmforge.provenance import git_commit
from swarmforge.settings import PACKER_DIR, REGION, REPO_ROOT, SCRIPTS_DIR, Settings
from swarmforge.targets.aws.amis import BakeRecord, ClusterAmis, parameter_name, record_path
from swarmforge.targets.aws.canonical import canonical_owner
from swarmforge.targets.base import Baked, BakeRequest

VAR_FILE = "bake.pkrvars.hcl"
TEMPLATE_LABEL = "packer/"
#: Docker's current major series when this was written; pin tighter with --docker-version.
DEFAULT_DOCKER_VERSION = "27.*"


def bake_ami(settings: Settings, request: BakeRequest, progress: Progress,
             operations: Callable[[], OperationStore]) -> Baked:
    """Validate, and unless ``request.dry_run``, build and record the AMI holding the
    cluster's lock (``operations``: the target's store, asked for once the inputs are good)."""
    pin = _checked_inputs(request)
    # A dry run only validates, which the Packer Debian ships can do; a build needs the plugin.
    minimum = packer.MINIMUM_VERSION if request.dry_run else packer.BAKE_MINIMUM_VERSION
    version = packer.require_version(minimum, timeout=settings.packer_timeout)
    work_dir = settings.build_dir
    variables = _variables(settings, pin, request.regions)
    var_file = packer.render_var_file(variables, work_dir / VAR_FILE)
    with progress.step(f"validating {TEMPLATE_LABEL} with Packer {version}"):
        level = packer.validate(PACKER_DIR, var_file, version=version,
                                timeout=settings.packer_timeout)
    syntax_only = level is ValidationLevel.LEGACY
    if request.dry_run:
        return Baked(TEMPLATE_LABEL, var_file, version, syntax_only)
    with operations().exclusive("invoke bake --target aws", progress.detail):
        with progress.step(f"baking the Docker AMI of cluster {settings.cluster!r} in "
                           f"{settings.region}"):
            result = packer.build(PACKER_DIR, var_file, work_dir, _indented(progress),
                                  version=version, init=False, timeout=settings.packer_timeout)
        record = _record(variables, result)
        with progress.step("recording the AMI in SSM and in " + str(record_path(settings))):
            _record_everywhere(settings, record)
    return Baked(TEMPLATE_LABEL, var_file, version, syntax_only, images=dict(record.amis),
                 recorded=f"{record_path(settings)} and in SSM {parameter_name(settings.cluster)}",
                 log=record.log)


def _indented(progress: Progress) -> packer.ProgressSink:
    # Packer's lines may hold line breaks ("AMIs were created:\nus-east-1: ami-..."):
    # each part is indented under the step.
    def show(line: str) -> None:
        for part in line.splitlines():
            progress.detail(part)

    return show


def _checked_inputs(request: BakeRequest) -> DockerPin:
    """The Docker pin, once every input is known good; else every problem at once."""
    problems = [f"ami_regions: {region!r} is not an AWS region name such as eu-west-1"
                for region in request.regions if not REGION.match(region)]
    try:
        pin = packer.docker_pin(request.docker_version or DEFAULT_DOCKER_VERSION)
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
                         docker_log_max_file=settings.docker_log_max_file,
                         ubuntu_owner=canonical_owner(settings.region))


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
    # The cluster's own region last: when SSM refuses a copy, apply's AMI and this
    # machine's record of it both stay the last good bake's, and still agree.
    # record_current waits until SSM reads the AMI back (it checks the value later).
    for region in sorted(record.amis, key=lambda region: region == settings.region):
        ClusterAmis.of(settings, region).record_current(record.amis[region])
    record.save(record_path(settings))
