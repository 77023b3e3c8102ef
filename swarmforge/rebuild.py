"""The rebuild use case: bake a new node image only when what it is made from changed,
roll the cluster onto it, prune old images, and say what was done, in JSON too.

CI runs it unattended every week, so it never asks anything, and it refuses to
start on an unhealthy swarm. An operation an earlier run left unfinished (a roll
or replace-node killed half-way, on this machine or, on aws, on another: the
journal is the target's, see operation.py) is finished first, as its own command
would, never buried under a new one. The report is written whatever happens,
failures included.

What it compares, the current image against a bake now:

- base: the Ubuntu AMI Packer would start from (aws only) against the one the
  AMI was built on;
- docker: the Docker spec a bake would pin (``--docker-version``; default on
  aws: the current AMI's; on local: the sandbox's own engine, which a local
  bake checks rather than installs) against the one the image was baked with;
- inputs: the digest of ``packer/`` and ``scripts/`` against the one stamped on
  the image after its bake;
- age (aws): a newer Docker release within the same spec cannot be seen
  without Docker's apt repository, so an AMI older than ``max_age_days`` is
  baked again (each bake installs the newest release the spec allows);
- force: ``--force``.

A roll runs even when nothing is baked, so nodes left on an older image (a roll
that was refused last time) catch up.

A deadline (``stop_by``; CI: shortly before its AWS credentials expire) stops it
cleanly: no bake and no node replacement starts past it, and a stopped roll's
journal is left for the next run to carry on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from swarmforge import packer
from swarmforge.bake import bake as run_bake
from swarmforge.cluster import Cluster
from swarmforge.errors import UnhealthyError
from swarmforge.images import pruning
from swarmforge.operation import ReplaceNodeRecord, RollRecord, exclusive, unfinished
from swarmforge.private_files import private_dirs, write_private
from swarmforge.progress import Progress
from swarmforge.provenance import ImageFacts, ImageStore, inputs_digest
from swarmforge.redact import redact
from swarmforge.replace_node import replace_node
from swarmforge.roll import RollOutcome, past, roll
from swarmforge.settings import Settings
from swarmforge.targets import target_for
from swarmforge.targets.base import BakeRequest, Target

#: Exit codes: 0 and 10 are success, 11 a clean stop at the deadline; anything else is the
#: failure's own code (1, 2, 4).
EXIT_NOTHING_TO_DO = 0
EXIT_REBUILT = 10
EXIT_STOPPED = 11  # the deadline came first: the rest is left for the next run
REPORT_FILE = "rebuild-report.json"


@dataclass(frozen=True)
class RebuildOptions:
    """What the operator (or the CI workflow) asked of this rebuild."""

    force: bool = False
    docker_version: str | None = None  # None: the spec the current image was baked with
    ami_regions: tuple[str, ...] = ()  # aws: regions the AMI is copied to (and pruned in)
    keep: int = 3  # images prune keeps in any case
    max_age_days: float = 30.0  # 0: never bake for age alone
    drain_timeout: float = 120.0
    report_path: Path | None = None  # default: <state_dir>/_build/<cluster>/rebuild-report.json
    stop_by: datetime | None = None  # no bake or node replacement starts past it (aware)


@dataclass(frozen=True)
class Check:
    """One input compared: its name, whether it calls for a bake, and why."""

    name: str
    changed: bool
    detail: str


@dataclass
class Resumed:
    """An operation an earlier run left unfinished, which this rebuild finished first."""

    operation: str  # roll | replace-node
    summary: str
    started: str | None
    finished: bool = False
    replaced: list[str] = field(default_factory=list)  # hostnames, the earlier run's too
    left: list[str] = field(default_factory=list)  # a roll the deadline stopped again


@dataclass
class RebuildReport:
    """What one rebuild found and did; saved as JSON for CI."""

    cluster: str
    target: str
    started: str
    result: str = "failed"  # nothing-to-do | rebuilt | rolled | stopped | failed
    exit_code: int = 1
    checks: list[Check] = field(default_factory=list)
    previous_image: str | None = None
    baked: dict[str, str] = field(default_factory=dict)  # {where: new image id}
    rolled: list[str] = field(default_factory=list)  # hostnames replaced
    resumed: Resumed | None = None  # an unfinished operation, finished first
    pruned: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    finished: str | None = None

    @property
    def reasons(self) -> list[str]:
        return [check.detail for check in self.checks if check.changed]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reasons": self.reasons}

    def save(self, path: Path) -> None:
        """Write atomically: CI uploads the file whatever state the run died in."""
        private_dirs(path.parent)
        # Kept for months as a CI artifact: no secret in it, whatever an error said.
        write_private(path, redact(json.dumps(self.as_dict(), indent=2) + "\n"))


def report_path(settings: Settings, options: RebuildOptions) -> Path:
    return options.report_path or settings.build_dir / REPORT_FILE


def rebuild(settings: Settings, options: RebuildOptions,
            progress: Progress | None = None) -> RebuildReport:
    """Check, bake if needed, roll, prune; the report is saved even when this raises."""
    progress = progress or Progress()
    report = RebuildReport(settings.cluster, settings.target, _now())
    try:
        _rebuild(settings, options, progress, report)
    except (Exception, KeyboardInterrupt) as error:  # Ctrl-C too: the report says where
        report.error = str(error) or type(error).__name__
        report.exit_code = int(getattr(error, "exit_code", 1))
        raise
    finally:
        report.finished = _now()
        report.save(report_path(settings, options))
    return report


def _rebuild(settings: Settings, options: RebuildOptions, progress: Progress,
             report: RebuildReport) -> None:
    target = target_for(settings)
    store = target.image_store(options.ami_regions)
    # The bake dir's lock: this machine's rebuilds of the cluster one at a time. The
    # cluster's lock (the target's) is not re-entrant: each step takes it in turn (the
    # checks, the bake, the roll, the prune), never one inside another.
    with exclusive(settings.build_dir, settings.cluster, "invoke rebuild"):
        report.resumed = _resume(settings, options, progress, report)
        if report.resumed and report.resumed.left:
            return _stopped(report, options, f"finishing the unfinished {report.resumed.operation}")
        live = _preflight(settings, progress)
        current = store.current()
        report.previous_image = current.id if current else None
        spec = options.docker_version or store.bake_docker_spec(current)
        packer.docker_pin(spec)  # a bad spec stops here, before anything is built
        with progress.step("comparing the current image with what a bake would use now"):
            report.checks = decide(current, store.newest_base(), spec, inputs_digest(), options)
            for check in report.checks:
                progress.detail(f"{check.name}: {check.detail}")
        if report.reasons:
            if past(options.stop_by):
                return _stopped(report, options, "before baking")
            report.baked = _bake(settings, target, options, spec, store, progress)
            if report.previous_image in report.baked.values():  # content-addressed local images
                report.notes.append(f"the bake made {report.previous_image} again (the same "
                                    "content): only its inputs digest changed")
        if live:
            rolled = _roll(settings, options, progress)
            report.rolled = rolled.replaced
            if rolled.left:
                return _stopped(report, options, f"with {len(rolled.left)} node(s) left to "
                                                 f"replace ({', '.join(rolled.left)})")
        else:
            report.notes.append("the cluster has no nodes: nothing to roll; `invoke apply` "
                                "will launch nodes from the current image")
        if report.baked or report.rolled:
            with progress.step(f"pruning old images (keeping the newest {options.keep})"), \
                    pruning(target, settings.cluster, "invoke rebuild (prune)", progress.detail):
                report.pruned = store.prune(options.keep)
    replaced = bool(report.rolled or (report.resumed and report.resumed.replaced))
    report.result = "rebuilt" if report.baked else "rolled" if replaced else "nothing-to-do"
    report.exit_code = EXIT_REBUILT if report.baked or replaced else EXIT_NOTHING_TO_DO


def _stopped(report: RebuildReport, options: RebuildOptions, where: str) -> None:
    """The deadline came first: say where it stopped; nothing is pruned."""
    assert options.stop_by is not None  # only a deadline stops a rebuild
    report.result, report.exit_code = "stopped", EXIT_STOPPED
    deadline = options.stop_by.astimezone(timezone.utc)
    report.notes.append(f"stopped {where}: the deadline (--stop-by {deadline:%Y-%m-%dT%H:%M:%SZ}) "
                        "has passed; the next `invoke rebuild` carries on")


def _resume(settings: Settings, options: RebuildOptions, progress: Progress,
            report: RebuildReport) -> Resumed | None:
    """Finish what an earlier run left in the journal (on this machine or, on aws, any other),
    as its own command would, before anything else: a new roll never buries a half-done one."""
    cluster = Cluster(settings, progress)
    record = cluster.target.operation_store().journal().load()
    if record is None:
        return None
    resumed = report.resumed = Resumed(record.operation, record.summary, record.started)
    with progress.step(f"finishing the unfinished {record.operation} ({record.summary}, "
                       f"started {record.started or '?'})"):
        if isinstance(record, RollRecord):
            outcome = roll(cluster, everything=False, act=True, drain_timeout=options.drain_timeout,
                           show=lambda plan: _details(progress, plan),
                           stop_by=options.stop_by)
            resumed.replaced, resumed.left = outcome.replaced, list(outcome.left)
        elif isinstance(record, ReplaceNodeRecord):
            replace_node(cluster, record.query, act=True, drain_timeout=options.drain_timeout)
            resumed.replaced = [node.hostname for node in record.replacement.nodes]
        else:
            raise unfinished(settings.cluster, record)
    resumed.finished = not resumed.left
    return resumed


def _details(progress: Progress, lines: list[str]) -> None:
    for line in lines:
        progress.detail(line)


def _preflight(settings: Settings, progress: Progress) -> bool:
    """Whether the cluster has nodes to roll; raises when rolling them would not be safe."""
    cluster = Cluster(settings, progress)
    if not cluster.target.exists():
        return False
    # The lock: no other operation is half-way through; the journal: none was interrupted.
    operations = cluster.target.operation_store()
    with operations.exclusive("invoke rebuild (checks)", progress.detail):
        operations.journal().refuse_if_unfinished(settings.cluster)
        managers, workers = cluster.nodes_in_state()
        if not managers:
            return False  # a sandbox a local bake prepared, say: no node to roll yet
        health = cluster.swarm(managers).health(len(managers), len(workers))
    if not health.healthy:
        raise UnhealthyError("refusing to rebuild: the swarm is not healthy: "
                             + "; ".join(health.problems)
                             + ". Nothing was baked or replaced; `invoke status` shows the nodes.")
    return True


def decide(current: ImageFacts | None, newest_base: str | None, spec: str, digest: str,
           options: RebuildOptions, now: datetime | None = None) -> list[Check]:
    """Every input compared; a bake is due when any check says changed.

    ``newest_base``: the base image a bake would start from (None: the target has none);
    ``spec``: the Docker spec a bake would use; ``digest``: inputs_digest() now.
    """
    if current is None:
        return [Check("image", True, "no image recorded for the cluster: a first bake")]
    checks = [_base_check(current, newest_base), _docker_check(current, spec),
              _inputs_check(current, digest),
              _age_check(current, options.max_age_days, now or datetime.now(timezone.utc))]
    if options.force:
        checks.append(Check("force", True, "--force"))
    return [check for check in checks if check is not None]


def _base_check(current: ImageFacts, newest: str | None) -> Check | None:
    if newest is None:
        return None  # the target builds on no base image
    if not current.base:
        return Check("base", True, f"{current.id} does not say which base image it was built "
                                   f"on; the newest is {newest}")
    if newest != current.base:
        return Check("base", True, f"newer base image {newest} ({current.id} was built on "
                                   f"{current.base})")
    return Check("base", False, f"{current.base} is still the newest base image")


def _docker_check(current: ImageFacts, spec: str) -> Check:
    if not current.docker_spec:
        return Check("docker", False, f"{current.id} does not record its Docker spec; baking "
                                      f"{spec} only if something else changed")
    if spec != current.docker_spec:
        return Check("docker", True, f"a bake now pins Docker {spec}; {current.id} has "
                                     f"{current.docker_spec}")
    return Check("docker", False, f"Docker {spec}, as baked")


def _inputs_check(current: ImageFacts, digest: str) -> Check:
    if not current.inputs_digest:
        return Check("inputs", True, f"{current.id} records no digest of packer/ and scripts/ "
                                     "(baked outside rebuild)")
    if digest != current.inputs_digest:
        return Check("inputs", True, f"packer/ or scripts/ changed since {current.id} was baked "
                                     f"({_short(current.inputs_digest)} -> {_short(digest)})")
    return Check("inputs", False, f"packer/ and scripts/ as baked ({_short(digest)})")


def _age_check(current: ImageFacts, max_age_days: float, now: datetime) -> Check | None:
    if current.created is None or max_age_days <= 0:
        return None
    age = (now - current.created).total_seconds() / 86400
    if age > max_age_days:
        return Check("age", True, f"{current.id} is {age:.0f} days old (max {max_age_days:g}): "
                                  "newer Docker releases within the spec and package updates "
                                  "only arrive with a bake")
    return Check("age", False, f"{current.id} is {age:.0f} days old (max {max_age_days:g})")


def _bake(settings: Settings, target: Target, options: RebuildOptions, spec: str,
          store: ImageStore, progress: Progress) -> dict[str, str]:
    """Bake with the bake use case; returns {where: image id}, stamped."""
    digest = inputs_digest()  # again: the trees as they are when the bake reads them
    baked = run_bake(settings, BakeRequest(spec, options.ami_regions), progress, target)
    images = dict(baked.images)
    with progress.step("stamping the digest of packer/ and scripts/ on the new image"):
        store.stamp(images, digest)
    return images


def _roll(settings: Settings, options: RebuildOptions, progress: Progress) -> RollOutcome:
    # A fresh Cluster: its target chooses the image again, now the one just recorded.
    def show(plan: list[str]) -> None:
        for line in plan:
            progress.detail(line)

    with progress.step("rolling the cluster onto the current image"):
        return roll(Cluster(settings, progress), everything=False, act=True,
                    drain_timeout=options.drain_timeout, show=show, stop_by=options.stop_by)


# --- what it prints ---------------------------------------------------------------------


def summary(report: RebuildReport, path: Path) -> str:
    """A few aligned lines: every check, then what was baked, rolled and pruned."""
    rows = [(check.name, "CHANGED" if check.changed else "same", check.detail)
            for check in report.checks]
    if report.baked:
        rows.append(("baked", "", ", ".join(f"{i} ({w})" for w, i in report.baked.items())))
    if report.resumed:
        done = report.resumed
        rows.append(("resumed", "", f"the unfinished {done.operation} ({done.summary}, started "
                                    f"{done.started or '?'}): "
                                    + ("finished" if done.finished else "stopped again")
                                    + (f"; replaced {', '.join(done.replaced)}" if done.replaced
                                       else "")))
    if report.rolled:
        rows.append(("rolled", "", f"{len(report.rolled)} node(s): {', '.join(report.rolled)}"))
    if report.pruned:
        rows.append(("pruned", "", ", ".join(report.pruned)))
    rows += [("note", "", note) for note in report.notes]
    width = max((len(name) for name, _, _ in rows), default=0)
    lines = [f"rebuild of cluster {report.cluster!r} on {report.target}: {report.result}"]
    lines += [f"  {name.ljust(width)}  {state.ljust(7)}  {text}".rstrip() for name, state, text in rows]
    lines.append(f"report: {path}")
    return "\n".join(lines)


def _short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
