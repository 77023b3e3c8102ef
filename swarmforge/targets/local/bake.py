"""The local target's bake: a node image made by a real Packer run in the sandbox.

As on aws: the inputs (Docker version spec, archives to preload) and
Packer are checked before anything runs; the var file is rendered and ``packer
validate`` runs; then a throwaway builder host comes up in the cluster's
sandbox, ``packer build`` provisions it over SSH (packer/local/ with the shared
packer/variables.pkr.hcl), the builder is captured into the project's image
store and removed. Only then is the image recorded as the cluster's current
one, so a failed bake leaves the previous record in place and nothing new in
the store.

``image_store`` has ``recorded_image`` and ``LocalImages`` (list, prune).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from packaging.version import Version

from swarmforge import packer
from swarmforge.errors import ConfigError, SandboxError
from swarmforge.operation import OperationStore
from swarmforge.packer import DockerPin
from swarmforge.progress import Progress
from swarmforge.provenance import git_commit
from swarmforge.settings import PACKER_DIR, REPO_ROOT, SCRIPTS_DIR, Settings
from swarmforge.targets.base import Baked, BakeRequest
from swarmforge.targets.local.builder import Builder, Provenance, sandbox_docker_version
from swarmforge.targets.local.image_store import (
    ImageRecord,
    LocalImageStore,
    image_record_path,
    recorded_image,
)
from swarmforge.targets.local.node_image import LocalImage, describe_changes
from swarmforge.targets.local.sandbox import SandboxLayout

#: Prepares the cluster's sandbox: its layout and the SSH identity that reaches its hosts.
PrepareSandbox = Callable[[], tuple[SandboxLayout, Path]]

LOCAL_TEMPLATE_DIR = PACKER_DIR / "local"
#: Files of packer/ the local build shares with the AMI's.
SHARED_FILES = ("variables.pkr.hcl",)
VAR_FILE = "local.pkrvars.hcl"
VAR_FILE_TEMPLATE = "local.pkrvars.hcl.j2"
TEMPLATE_LABEL = "packer/local/"


@dataclass(frozen=True)
class SandboxBakeVariables:
    """The values of one local bake, written to ``local.pkrvars.hcl``."""

    cluster: str
    git_commit: str
    docker: DockerPin
    scripts_dir: Path
    docker_log_max_size: str
    docker_log_max_file: int
    builder_address: str
    builder_dir: Path
    ssh_private_key_file: Path
    preload_images: tuple[str, ...]
    run_id: str = field(default_factory=packer.new_run_id)  # Packer's manifest must carry it back


def bake_local(settings: Settings, request: BakeRequest, progress: Progress,
               prepare: PrepareSandbox, operations: OperationStore) -> Baked:
    """Validate, and unless ``request.dry_run``, build, capture and record the local image,
    holding the cluster's lock (``operations``: the target's store)."""
    pin, extra_images = _checked_inputs(settings, request)
    # The null builder is built in: any Packer will do.
    version = packer.require_version(packer.MINIMUM_VERSION, timeout=settings.packer_timeout)
    work_dir = settings.build_dir
    # The cluster's lock, once the inputs are good: preparing the sandbox writes what
    # apply and roll use (its hosts' network, the SSH files), the new record changes what
    # a roll launches, a prune meanwhile could remove it; and two bakes would share one
    # builder host. Rebuild bakes between its steps, never while holding this lock.
    with operations.exclusive("invoke bake --target local", progress.detail):
        with progress.step(f"preparing the sandbox of cluster {settings.cluster!r}"):
            layout, identity = prepare()
        builder = Builder(layout)
        variables = _variables(settings, builder, identity, pin, extra_images)
        var_file = packer.render_var_file(variables, work_dir / VAR_FILE, VAR_FILE_TEMPLATE)
        with tempfile.TemporaryDirectory(prefix="swarmforge-packer-") as scratch:
            template = assemble_template(Path(scratch) / "template")
            with progress.step(f"validating {PACKER_DIR.name}/{LOCAL_TEMPLATE_DIR.name}/ "
                               f"with Packer {version}"):
                packer.validate(template, var_file, version=version,
                                timeout=settings.packer_timeout)
            if request.dry_run:
                return Baked(TEMPLATE_LABEL, var_file, version)
            return _bake(settings, builder, template, var_file, variables, version, progress)


def _variables(settings: Settings, builder: Builder, identity: Path, pin: DockerPin,
               extra_images: list[str]) -> SandboxBakeVariables:
    stock = Path(builder.host.layout.dir) / "images" / "sample.tar"  # made by Sandbox.prepare
    return SandboxBakeVariables(
        cluster=settings.cluster, git_commit=git_commit(REPO_ROOT), docker=pin,
        scripts_dir=SCRIPTS_DIR, docker_log_max_size=settings.docker_log_max_size,
        docker_log_max_file=settings.docker_log_max_file, builder_address=builder.address,
        builder_dir=builder.dir, ssh_private_key_file=identity,
        preload_images=(str(stock), *extra_images))


def assemble_template(into: Path) -> Path:
    """The local build's template dir: packer/local/ and the files it shares from packer/."""
    into.mkdir(parents=True)
    for source in [*(PACKER_DIR / name for name in SHARED_FILES),
                   *sorted(LOCAL_TEMPLATE_DIR.glob("*.pkr.hcl"))]:
        shutil.copyfile(source, into / source.name)
    return into


def _bake(settings: Settings, builder: Builder, template: Path, var_file: Path,
          variables: SandboxBakeVariables, version: Version,
          progress: Progress) -> Baked:
    store = LocalImageStore.of(settings)
    previous = _previous(settings)
    work_dir = settings.build_dir
    try:
        with progress.step(f"starting the builder host {builder.host.hostname} at {builder.address}"):
            builder.up()
        with progress.step(f"baking the local node image of cluster {settings.cluster!r}"):
            result = packer.build(template, var_file, work_dir, _detail(progress),
                                  version=version, init=False, timeout=settings.packer_timeout)
        with progress.step(f"capturing {builder.host.hostname} into {store.root}"):
            provenance = Provenance(result.run_uuid, variables.docker.spec, variables.git_commit)
            image, _new = builder.capture(store, provenance, previous)
    finally:
        with progress.step(f"removing the builder host {builder.host.hostname}"):
            builder.down()
    record = ImageRecord(
        cluster=settings.cluster, image=image.id, path=str(image.path),
        baked_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        packer_run_uuid=result.run_uuid, git_commit=variables.git_commit,
        docker_spec=variables.docker.spec, changes=describe_changes(previous, image),
        log=result.log_path)
    with progress.step(f"recording {image.id} in {image_record_path(settings)}"):
        store.claim(image.id, settings.cluster)
        record.save(image_record_path(settings))
    return Baked(TEMPLATE_LABEL, var_file, version, images={"local": image.id},
                 recorded=f"{image_record_path(settings)}; the image is in {image.path}",
                 log=result.log_path, previous=previous.id if previous else None,
                 changes=record.changes)


def _previous(settings: Settings) -> LocalImage | None:
    """The image the cluster had, to say what changed; a record of one since removed
    by hand is no reason to refuse the bake that replaces it."""
    try:
        return recorded_image(settings)
    except SandboxError:
        return None


def _detail(progress: Progress) -> packer.ProgressSink:
    # Packer's lines may hold line breaks: each part is indented under the step.
    def show(line: str) -> None:
        for part in line.splitlines():
            progress.detail(part)

    return show


def _checked_inputs(settings: Settings, request: BakeRequest) -> tuple[DockerPin, list[str]]:
    """The Docker pin and the archives to preload, once all are known good; else every
    problem at once, before anything runs."""
    problems = []
    archives = [Path(p).expanduser().resolve() for p in settings.preload_images]
    problems += [problem for archive in archives if (problem := _archive_problem(archive))]
    # They land in one directory on the builder, beside the stock sample.tar.
    names = [archive.name for archive in archives] + ["sample.tar"]
    problems += [f"preload_images: more than one archive is named {name}; rename one"
                 for name in sorted(set(names)) if names.count(name) > 1]
    try:
        pin = packer.docker_pin(request.docker_version or sandbox_docker_version())
    except ConfigError as error:
        problems = error.problems + problems
    if problems:
        raise ConfigError(problems)
    return pin, [str(archive) for archive in archives]


def _archive_problem(archive: Path) -> str | None:
    """Why ``archive`` is not a ``docker save`` archive the builder can load, or None."""
    if archive.suffix != ".tar":
        return f"preload_images: {archive} must be a `docker save` archive named *.tar"
    if not archive.is_file():
        return f"preload_images: {archive} does not exist"
    try:
        with tarfile.open(archive, "r:") as contents:
            contents.getmember("manifest.json")
    except (OSError, tarfile.TarError):
        return f"preload_images: {archive} is not a tar archive"
    except KeyError:
        return f"preload_images: {archive} has no manifest.json: not a `docker save` archive"
    return None
