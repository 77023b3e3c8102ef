"""What each task does with its flags: load settings, call one use case, print the result.

Errors become one clean exit here, and only here. Every use case but apply's, status's
and destroy's is imported when its command runs, so that those start without Packer's
templates (jinja2), botocore or the replacement machinery.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from invoke.exceptions import Exit

from swarmforge.cluster import Cluster
from swarmforge.errors import (
    CommandTimeout,
    ConfigError,
    Interrupted,
    SwarmforgeError,
    duration,
    interrupted,
)
from swarmforge.node_facts import NodeFacts
from swarmforge.redact import redact
from swarmforge.setting_values import days_flag, seconds_flag, whole_flag
from swarmforge.settings import Settings, load_settings
from swarmforge.state_dir import no_such_cluster
from swarmforge.swarm import node_table
from swarmforge.targets import target_for
from swarmforge.targets.base import Baked, BakeRequest
from swarmforge.unlock import force_unlock, lock_status, terraform_unlock

if TYPE_CHECKING:  # imported when its command runs
    from swarmforge.access import ContextGone

T = TypeVar("T")
# Defaults of the flags that are not settings (tasks.py passes their text, or None).
DRAIN_TIMEOUT = 120.0
MAX_UNAVAILABLE = 1
KEEP = 3


def from_aws(error: Exception) -> bool:
    """An error of boto3's (botocore's), known by its module: the commands that never reach
    AWS never import botocore."""
    return type(error).__module__.startswith("botocore.")


def clean_exit(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn our errors into ``Exit``: a message and an exit code, no traceback; Ctrl-C and
    a deadline nobody caught too. Every message goes through ``redact``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except SwarmforgeError as exc:
            if isinstance(exc, CommandTimeout) and not exc.resume:  # no caller knew better
                exc.resume = "Run the same command again to carry on."
            raise failure(str(exc), exc.exit_code) from exc
        except PermissionError as exc:  # not root: a dir of root's, such as a state dir it made
            denied = exc.filename if exc.filename is not None else exc
            raise failure(f"permission denied: {denied}") from exc
        except KeyboardInterrupt as exc:  # Ctrl-C: where it stopped, how to carry on; exit 130
            raise failure(str(interrupted(exc)), Interrupted.exit_code) from None
        except subprocess.TimeoutExpired as exc:  # a deadline outside process.run's (a library's)
            program = Path(str(exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) else exc.cmd))
            within = duration(round(exc.timeout, 1))  # what was left of it: 0.199972 s
            raise failure(f"{program.name} did not finish within {within}. Run the same "
                          "command again to carry on.") from None
        except Exception as exc:
            if from_aws(exc):  # credentials, network, permissions
                raise failure(f"AWS: {exc}") from exc
            raise

    return wrapper


def failure(message: str, code: int = 1) -> Exit:
    """The one line an operator sees when a task fails, with no secret in it."""
    return Exit(redact(f"swarmforge: {message}"), code=code)


def resumable(fn: Callable[..., T]) -> Callable[..., T]:
    """A journalled operation's task (under ``clean_exit``): a Ctrl-C that no journalled
    step caught (between two, the lock, the end) still says how to carry on when an
    operation is in the journal."""

    @functools.wraps(fn)
    def wrapper(config: Mapping[str, Any], flags: Mapping[str, Any], *args: Any,
                **kwargs: Any) -> T:
        try:
            return fn(config, flags, *args, **kwargs)
        except KeyboardInterrupt as exc:
            stop = interrupted(exc)
            stop.resume = stop.resume or _journal_resume(config, flags)
            raise stop from None

    return wrapper


def _journal_resume(config: Mapping[str, Any], flags: Mapping[str, Any]) -> str:
    """How to finish the operation in the cluster's journal; "" when there is none, or it
    cannot be read now (a second Ctrl-C gives up on it)."""
    try:
        record = target_for(load_settings(config, flags)).operation_store().journal().load()
    except (Exception, KeyboardInterrupt):
        return ""
    return f"run `{record.resume}` to carry on" if record else ""


@clean_exit
def apply(config: Mapping[str, Any], flags: Mapping[str, Any], rotate: bool = True,
          yes: bool = False, ask: Callable[[str], str] = input, autolock: bool = False,
          heal: bool = False) -> None:
    """Shows the plan first; asks before acting when a person is at the terminal and
    --yes was not given (scripts and CI, with no terminal, go ahead as before, except
    that no node is removed: a scale-in needs --yes there). ``heal``: `invoke heal --yes`
    first."""
    settings = load_settings(config, flags)

    def confirm(plan: list[str]) -> bool:
        # As progress (stderr): `==> ` the heading, its lines indented beneath it.
        print("\n".join([f"==> {plan[0]}", *(f"  {line}" for line in plan[1:])]),
              file=sys.stderr, flush=True)
        if yes or not sys.stdin or not sys.stdin.isatty():
            return True
        try:
            return ask("Apply? [y/N] ").strip().lower() in ("y", "yes")
        except EOFError:
            return False

    cluster = Cluster(settings)
    if heal and cluster.target.exists():  # the dead nodes replaced first, as `invoke heal --yes`
        from swarmforge.heal import heal as run_heal

        run_heal(cluster, act=True, rotate=rotate,
                 show=lambda plan: print("\n".join(["==> heal first:", *plan]), file=sys.stderr,
                                         flush=True))
    # Nodes beyond the counts go only when asked: --yes, or "y" at a terminal.
    at_terminal = bool(sys.stdin) and sys.stdin.isatty()
    report = cluster.apply(rotate=rotate, confirm=confirm, autolock=autolock,
                           may_remove=yes or at_terminal)
    if report is None:
        raise Exit("swarmforge: nothing applied (answer y, or pass --yes)", code=1)
    print(node_table(report.health.nodes))
    verdict = "created" if report.bootstrapped else "updated" if report.changed else "unchanged"
    print(f"\ncluster {settings.cluster!r} {verdict}: {len(report.health.managers)} managers, "
          f"{len(report.health.workers)} workers, healthy")
    if report.autolock:
        print(f"swarm autolock on: the unlock key is kept in {report.autolock}")


@clean_exit
def status(config: Mapping[str, Any], flags: Mapping[str, Any], as_json: bool,
           managers: object = None, workers: object = None) -> None:
    """``managers``/``workers``: the counts to judge the swarm against; by default,
    as many as Terraform manages."""
    settings = load_settings(config, flags)
    expected = _count("managers", managers), _count("workers", workers)
    cluster = _existing(settings)
    health = cluster.status(*expected)
    facts = cluster.node_facts()  # read with the nodes: no second look-up
    if as_json:
        print(json.dumps({"cluster": settings.cluster, "target": settings.target,
                          "healthy": health.healthy, "problems": list(health.problems),
                          "nodes": [{**n.as_dict(), **_facts_dict(facts.get(n.address))}
                                    for n in health.nodes]}, indent=2))
        return
    print(node_table(health.nodes, _notes(facts)))
    print("\nhealthy" if health.healthy else "\nNOT healthy: " + "; ".join(health.problems))
    if not health.healthy:
        raise Exit(code=3)


def _facts_dict(fact: NodeFacts | None) -> dict[str, object]:
    """What status --json adds to a swarm node: its image, its machine's state and its drift
    from the settings (null and [] where the target cannot tell)."""
    fact = fact or NodeFacts()
    return {"image": fact.image, "machine": fact.state, "drift": list(fact.drift)}


def _notes(facts: Mapping[str, NodeFacts]) -> dict[str, str]:
    """{swarm address: the NOTE column}: a machine that is not running, and drift that
    `invoke roll` replaces the node for."""
    notes = {}
    for address, fact in facts.items():
        said = [] if fact.reachable else [f"machine {fact.state}"]
        if fact.drift:
            said.append("; ".join(fact.drift) + ": `invoke roll` replaces it")
        if said:
            notes[address] = "; ".join(said)
    return notes


def _count(name: str, value: object) -> int | None:
    """A count given on the command line, or None; ConfigError for anything else."""
    if value is None:
        return None
    try:
        count = int(str(value))
    except ValueError:
        raise ConfigError([f"{name}: {value!r} is not a whole number"]) from None
    if count < 0:
        raise ConfigError([f"{name}: {count} is negative; use 0 or more"])
    return count


@clean_exit
def destroy(config: Mapping[str, Any], flags: Mapping[str, Any], yes: bool,
            ask: Callable[[str], str] = input) -> None:
    settings = load_settings(config, flags)
    if not yes and not _confirmed(settings, ask):
        raise Exit("swarmforge: nothing destroyed (answer with the cluster's name, or pass --yes)",
                   code=1)
    from swarmforge.access import close_own_context

    if Cluster(settings).destroy():
        print(f"cluster {settings.cluster!r} destroyed")
    else:
        print(f"cluster {settings.cluster!r}: nothing to destroy")
    # What `invoke context` left on this machine reaches nothing now: a context still in
    # use would make every docker command fail with ssh's error.
    try:
        said = _access_gone(close_own_context(settings))
    except SwarmforgeError as exc:  # the cluster is gone all the same: say what is left
        print(f"swarmforge: the Docker context of cluster {settings.cluster!r} is left: {exc}; "
              "`invoke context --remove` takes it out", file=sys.stderr)
        return
    if said:
        print(said)


@clean_exit
@resumable
def replace_node(config: Mapping[str, Any], flags: Mapping[str, Any], node: str, yes: bool,
                 rotate: bool, drain_timeout: object = None, backup: bool = True) -> None:
    from swarmforge.replace_node import Outcome as ReplaceOutcome
    from swarmforge.replace_node import replace_node as run_replace_node

    drain = seconds_flag("drain-timeout", drain_timeout, DRAIN_TIMEOUT)
    settings = load_settings(config, flags)

    def show(outcome: ReplaceOutcome) -> None:
        heading = "resuming" if outcome.resumed else "plan"
        print(f"{heading}: replace {node} in cluster {settings.cluster!r}\n"
              + "\n".join(outcome.plan), flush=True)

    outcome = run_replace_node(_existing(settings), node, act=yes, rotate=rotate,
                               drain_timeout=drain, backup=backup, show=show)
    if not outcome.acted:
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    print(f"\n{node} replaced; the swarm is healthy" + ("; join tokens rotated" if rotate else ""))
    if outcome.then:  # it interrupted another operation, now back in the journal
        print(f"the interrupted operation is unfinished: run `{outcome.then}` to carry on")


@clean_exit
@resumable
def roll(config: Mapping[str, Any], flags: Mapping[str, Any], everything: bool,
         max_unavailable: object, yes: bool, rotate: bool, drain_timeout: object,
         backup: bool = True) -> None:
    from swarmforge.roll import roll as run_roll

    # At most the cluster's workers, too: the roll checks that against them.
    batch = whole_flag("max-unavailable", max_unavailable, MAX_UNAVAILABLE, 1)
    drain = seconds_flag("drain-timeout", drain_timeout, DRAIN_TIMEOUT)
    settings = load_settings(config, flags)
    outcome = run_roll(_existing(settings), everything=everything, max_unavailable=batch,
                       act=yes, rotate=rotate, drain_timeout=drain, backup=backup,
                       show=lambda plan: print(f"roll of cluster {settings.cluster!r}:\n"
                                               + "\n".join(plan), flush=True))
    if not outcome.acted:
        if outcome.up_to_date:
            return
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    print(f"\nreplaced {len(outcome.replaced)} node(s); the swarm is healthy"
          + ("; join tokens rotated" if rotate else ""))


@clean_exit
@resumable
def heal(config: Mapping[str, Any], flags: Mapping[str, Any], yes: bool, rotate: bool,
         drain_timeout: object = None) -> None:
    from swarmforge.heal import heal as run_heal

    drain = seconds_flag("drain-timeout", drain_timeout, DRAIN_TIMEOUT)
    settings = load_settings(config, flags)
    outcome = run_heal(_existing(settings), act=yes, rotate=rotate, drain_timeout=drain,
                       show=lambda plan: print(f"heal of cluster {settings.cluster!r}:\n"
                                               + "\n".join(plan), flush=True))
    if not outcome.acted:
        if outcome.plan[0].startswith("nothing to heal"):
            return
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    done = [f"replaced {', '.join(outcome.healed)}"] if outcome.healed else []
    done += [f"removed the stale entries of {', '.join(outcome.removed)}"] if outcome.removed else []
    print("\nhealed: " + "; ".join(done) + "; the swarm is healthy"
          + ("; join tokens rotated" if rotate and outcome.healed else ""))


@clean_exit
def backup(config: Mapping[str, Any], flags: Mapping[str, Any], allow_downtime: bool) -> None:
    from swarmforge.backup import backup as run_backup

    settings = load_settings(config, flags)
    outcome = run_backup(_existing(settings), allow_downtime=allow_downtime)
    manifest = outcome.stored.manifest
    print(f"backup {outcome.stored.name} stored in {outcome.stored.where}\n"
          f"  from {manifest.hostname} (Docker {manifest.docker_version}, stopped "
          f"{outcome.down_seconds:.1f}s), swarm {manifest.swarm_id}, sha256 {manifest.sha256}"
          + ("; autolocked: `invoke restore` cannot restore it (moby/moby#36852)"
             if manifest.autolocked else ""))
    for name in outcome.pruned:
        print(f"  pruned {name} (backup_keep: {settings.backup_keep})")


@clean_exit
@resumable
def restore(config: Mapping[str, Any], flags: Mapping[str, Any], yes: bool,
            from_backup: str | None) -> None:
    from swarmforge.restore import restore as run_restore

    settings = load_settings(config, flags)
    outcome = run_restore(_existing(settings), act=yes, from_backup=from_backup,
                          show=lambda plan: print(f"restore of cluster {settings.cluster!r}:\n"
                                                  + "\n".join(plan), flush=True))
    if not outcome.acted:
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    print(f"\nrestored: the swarm is healthy with its managers; RTO {outcome.rto:.0f}s "
          "(from the restore's start to a healthy swarm); join tokens rotated")


def _existing(settings: Settings) -> Cluster:
    """The cluster, if it exists: else one line and nothing made (only apply makes one)."""
    cluster = Cluster(settings)
    if not cluster.target.exists():
        raise no_such_cluster(settings)
    return cluster


def _confirmed(settings: Settings, ask: Callable[[str], str]) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    prompt = (f"Destroy every node of cluster {settings.cluster!r} on the {settings.target} "
              f"target? Type the cluster name to confirm: ")
    try:
        return ask(prompt).strip() == settings.cluster
    except EOFError:
        return False


@clean_exit
def bake(config: Mapping[str, Any], flags: Mapping[str, Any], docker_version: str | None,
         ami_regions: str | None, dry_run: bool) -> None:
    from swarmforge.bake import bake as run_bake

    settings = load_settings(config, flags)
    baked = run_bake(settings, BakeRequest(docker_version, _regions(ami_regions), dry_run))
    print("\n".join(_bake_lines(baked)))


def _bake_lines(baked: Baked) -> list[str]:
    if not baked.images:
        lines = [f"{baked.template} is valid with {baked.var_file}; nothing built (--dry-run)"]
        if baked.syntax_only:
            lines.append(f"Packer {baked.packer_version} has no plugins: the amazon plugin's own "
                         "settings were checked for syntax only")
        return lines
    lines = [f"{where}  {image}" for where, image in baked.images.items()]
    if baked.changes:
        lines.append(f"\nsince {baked.previous or 'no image'}: " + "\n  ".join(baked.changes))
    lines.append(f"\nrecorded in {baked.recorded}; Packer's log: {baked.log}")
    return lines


@clean_exit
def amis(config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    from swarmforge import images
    from swarmforge.catalog import image_table

    settings = load_settings(config, flags)
    listing = images.list_images(settings)
    if not listing.images:
        what = "AMIs" if listing.catalog.kind == "AMI" else "local images"
        print(f"cluster {settings.cluster!r} has no {what} {listing.catalog.where}")
        return
    print(image_table(listing.images, listing.current, listing.catalog.kind))


@clean_exit
def prune_amis(config: Mapping[str, Any], flags: Mapping[str, Any], keep: object, dry_run: bool,
               yes: bool) -> None:
    from swarmforge import images
    from swarmforge.catalog import plan_table

    newest = whole_flag("keep", keep, KEEP, 1)  # the newest image always stays
    settings = load_settings(config, flags)
    catalog, plan = images.prune_plan(settings, newest)
    if plan.keep or plan.delete:
        print(plan_table(plan, catalog.kind) + "\n")
    amis = catalog.kind == "AMI"
    if not plan.delete:
        print(f"cluster {settings.cluster!r}: nothing to prune {catalog.where}")
    elif dry_run or not yes:
        done = ("AMI(s) would be deregistered and their snapshots deleted" if amis
                else "image(s) would be removed")
        print(f"preview: {len(plan.delete)} {done}; pass --yes to do it")
    if dry_run or not yes:
        return
    # Even with nothing to prune: that deletes the snapshots an earlier prune had to leave.
    deleted = images.prune(settings, catalog, plan, lambda line: print(line, file=sys.stderr))
    left = catalog.snapshots_left
    still = f"{', '.join(left)}: EC2 still holds them, and the next prune-amis deletes them"
    if deleted and amis:
        print(f"deregistered {', '.join(deleted)} and deleted their snapshots"
              + (f" but {still}" if left else ""))
    elif deleted:
        print(f"removed {', '.join(deleted)}")
    elif left:
        print(f"snapshots an earlier prune left: {still}")


@clean_exit
@resumable
def rebuild(config: Mapping[str, Any], flags: Mapping[str, Any], *, force: bool,
            docker_version: str | None, ami_regions: str | None, keep: object,
            max_age_days: object, drain_timeout: object, report: str | None,
            stop_by: str | None = None) -> None:
    from swarmforge.rebuild import RebuildOptions, report_path, summary
    from swarmforge.rebuild import rebuild as run_rebuild

    options = RebuildOptions(force=force, docker_version=docker_version,
                             ami_regions=_regions(ami_regions), keep=whole_flag("keep", keep, KEEP, 1),
                             max_age_days=days_flag("max-age-days", max_age_days,
                                                    RebuildOptions.max_age_days),
                             drain_timeout=seconds_flag("drain-timeout", drain_timeout,
                                                        DRAIN_TIMEOUT),
                             report_path=Path(report).resolve() if report else None,
                             stop_by=_moment(stop_by))
    settings = load_settings(config, flags)
    path = report_path(settings, options)
    try:
        outcome = run_rebuild(settings, options)
    except Exception:
        print(f"rebuild of cluster {settings.cluster!r} failed; report: {path}", file=sys.stderr)
        raise
    print(summary(outcome, path))
    if outcome.exit_code:
        raise Exit(code=outcome.exit_code)


def _moment(text: str | None) -> datetime | None:
    """An ISO 8601 time with its zone (``2026-12-07T08:17:00Z``); None for None."""
    if text is None:
        return None
    iso = text.strip()
    if iso.endswith("Z"):  # Python 3.10 reads +00:00 only
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError([f"stop_by: {text!r} is not an ISO 8601 time with a zone, such as "
                           "2026-12-07T08:17:00Z"])
    return moment


def _regions(listed: str | None) -> tuple[str, ...]:
    return tuple(r.strip() for r in (listed or "").split(",") if r.strip())


@clean_exit
def state_bootstrap(config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    from swarmforge.state_bootstrap import state_bootstrap as run_state_bootstrap

    settings = load_settings(config, flags)
    done = run_state_bootstrap(settings)
    report = done.report
    what = ("created: " + ", ".join(report.changed) if report.created
            else "found; put back: " + ", ".join(report.changed) if report.changed
            else "found, every setting in place: nothing changed")
    print(f"state bucket {done.bucket!r} in {done.region} (account {done.account}): {what}")
    if done.table:
        print(f"lock table {done.table.table!r}: "
              + ("created" if done.table.created else "found: nothing changed"))
    print(f"cluster {settings.cluster!r} keeps its Terraform state at "
          f"s3://{done.bucket}/{settings.state_key}")


@clean_exit
def unlock(config: Mapping[str, Any], flags: Mapping[str, Any], *, force: bool,
           terraform_lock: str | None, yes: bool, ask: Callable[[str], str] = input) -> None:
    """Without flags: who holds the cluster and what is unfinished. ``force`` and
    ``terraform_lock`` remove a lock: asked first as destroy asks (the cluster's name, at a
    terminal), unless ``yes``; without a terminal, only with ``yes``."""
    settings = load_settings(config, flags)
    name = settings.cluster
    if not lock_status(settings).held_or_unfinished and not target_for(settings).exists():
        raise no_such_cluster(settings)  # a lock or a journal left alone counts as a cluster
    if not force and not terraform_lock:
        print("\n".join(_lock_lines(settings)))
        return
    what = " and ".join(w for w in ("swarmforge's lock" if force else "",
                                     f"Terraform's state lock {terraform_lock}" if terraform_lock
                                     else "") if w)
    if not yes and not _name_typed(settings, ask, f"Remove {what} of cluster {name!r}? A run "
                                   "still holding it would go on beside the next one. Type the "
                                   "cluster name to confirm: "):
        raise Exit("swarmforge: nothing unlocked (answer with the cluster's name, or pass --yes)",
                   code=1)
    if force:
        held = force_unlock(settings)
        print(f"cluster {name!r}: removed the lock held by {held}" if held
              else f"cluster {name!r}: its lock was free; nothing to remove")
    if terraform_lock:
        terraform_unlock(settings, terraform_lock)
        print(f"cluster {name!r}: Terraform's state lock {terraform_lock} removed")


def _lock_lines(settings: Settings) -> list[str]:
    found = lock_status(settings)
    name, flags = settings.cluster, f"--cluster {settings.cluster} --target {settings.target}"
    lines = [f"cluster {name!r}: lock at {found.where}"]
    if found.holder:
        lines += [f"  held by {found.holder}",
                  f"  if that run is gone: invoke unlock --force {flags}"]
    else:
        lines.append("  free: no operation is running")
    record = found.unfinished
    if record:
        lines += [f"  unfinished: {record.operation} ({record.summary}, started "
                  f"{record.started or '?'})", f"  to finish it: {record.resume}"
                  + (" (or invoke rebuild, which finishes it first)"
                     if record.operation in ("roll", "replace-node") else "")]
    else:
        lines.append("  no unfinished operation")
    return lines


def _name_typed(settings: Settings, ask: Callable[[str], str], prompt: str) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return ask(prompt).strip() == settings.cluster
    except EOFError:
        return False


@clean_exit
def unlock_key(config: Mapping[str, Any], flags: Mapping[str, Any], *, rotate: bool,
               disable: bool) -> None:
    """Where the unlock key is kept (never the key), mended if the store lacks it; with
    ``rotate`` a new key, with ``disable`` autolock off."""
    from swarmforge.unlock_key import unlock_key as run_unlock_key

    if rotate and disable:
        raise ConfigError(["--rotate and --disable: one at a time"])
    settings = load_settings(config, flags)
    report = run_unlock_key(_existing(settings), rotate=rotate, disable=disable)
    name = settings.cluster
    if report.done:
        print(f"cluster {name!r}: {report.done}")
    if report.autolock:
        print(f"cluster {name!r}: swarm autolock on; the unlock key is kept in {report.where}"
              + ("; the previous key too, until the rotation settles" if report.previous else ""))
    else:
        print(f"cluster {name!r}: swarm autolock off (`invoke apply --autolock` turns it on)"
              + (f"; {report.where} still holds a key: `invoke unlock-key --disable` removes it"
                 if report.stored else ""))


@clean_exit
def context(config: Mapping[str, Any], flags: Mapping[str, Any], *, remove: bool,
            ssh_config: bool = True) -> None:
    """The Docker context swarmforge-<cluster> made or updated; with ``remove``, gone.
    ``ssh_config`` False: ~/.ssh/config is left alone and its Include line printed."""
    from swarmforge.access import close_context, open_context

    settings = load_settings(config, flags)
    if remove:
        gone = close_context(settings)
        print(_access_gone(gone) or f"no docker context {gone.name!r}: nothing to remove")
        return
    made = open_context(_existing(settings), edit_ssh_config=ssh_config)
    print(f"docker context {made.name!r} {made.saved}: ssh://{made.name}, the manager "
          f"{made.manager} ({made.address})")
    if made.included:
        print(f"{made.ssh_config}: added `{made.include}` at its top (the Host alias "
              f"{made.name}); `invoke context --remove` takes it out")
    if made.checked:
        print(f"try: docker --context {made.name} node ls")
    else:
        print(f"add this line at the top of {made.ssh_config}, then docker --context "
              f"{made.name} reaches the swarm:\n{made.include}")


def _access_gone(gone: ContextGone) -> str:
    """What close_context removed, in one line; "" if nothing."""
    return "; ".join(what for done, what in (
        (gone.context, f"docker context {gone.name!r} removed"),
        (gone.include, "its Include taken out of ~/.ssh/config")) if done)


@clean_exit
def ssh(config: Mapping[str, Any], flags: Mapping[str, Any], *, node: str, command: str) -> None:
    """Becomes ssh to ``node`` (never returns, unless it fails before)."""
    from swarmforge.access import open_shell

    settings = load_settings(config, flags)
    open_shell(_existing(settings), node, command, lambda line: print(line, file=sys.stderr))
