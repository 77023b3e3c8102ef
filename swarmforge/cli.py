"""What each task does with its flags: load settings, call one use case, print the result.

Errors become one clean exit here, and only here.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from invoke.exceptions import Exit

from swarmforge.aws import client
from swarmforge.aws.amis import ClusterAmis, ami_table, parameter_name, plan_table
from swarmforge.aws.state_bucket import ensure_lock_table, ensure_state_bucket
from swarmforge.aws.target import caller_account
from swarmforge.bake import DEFAULT_DOCKER_VERSION, BakeOptions
from swarmforge.bake import bake as run_bake
from swarmforge.cluster import Cluster
from swarmforge.errors import ConfigError, SwarmforgeError
from swarmforge.local.image_store import LocalImages
from swarmforge.local_bake import LocalBakeOptions, LocalBakeReport, bake_local
from swarmforge.packer import ValidationLevel
from swarmforge.rebuild import RebuildOptions, report_path, summary
from swarmforge.rebuild import rebuild as run_rebuild
from swarmforge.replace_node import Outcome as ReplaceOutcome
from swarmforge.replace_node import replace_node as run_replace_node
from swarmforge.roll import roll as run_roll
from swarmforge.settings import Settings, load_settings
from swarmforge.swarm import node_table

T = TypeVar("T")


def clean_exit(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn our errors into ``Exit``: a message and an exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except SwarmforgeError as exc:
            raise Exit(f"swarmforge: {exc}", code=exc.exit_code) from exc
        except (BotoCoreError, ClientError) as exc:  # credentials, network, permissions
            raise Exit(f"swarmforge: AWS: {exc}", code=1) from exc

    return wrapper


@clean_exit
def apply(config: Mapping[str, Any], flags: Mapping[str, Any], rotate: bool = True) -> None:
    settings = load_settings(config, flags)
    report = Cluster(settings).apply(rotate=rotate)
    assert report.health is not None
    print(node_table(report.health.nodes))
    verdict = "created" if report.bootstrapped else "updated" if report.changed else "unchanged"
    print(f"\ncluster {settings.cluster!r} {verdict}: {len(report.health.managers)} managers, "
          f"{len(report.health.workers)} workers, healthy")


@clean_exit
def status(config: Mapping[str, Any], flags: Mapping[str, Any], as_json: bool) -> None:
    settings = load_settings(config, flags)
    counts_given = "managers" in flags or "workers" in flags
    cluster = Cluster(settings)
    health = cluster.status((settings.managers, settings.workers) if counts_given else None)
    if as_json:
        images = cluster.node_images()
        print(json.dumps({"cluster": settings.cluster, "target": settings.target,
                          "healthy": health.healthy, "problems": list(health.problems),
                          "nodes": [{**n.as_dict(), "image": images.get(n.address)}
                                    for n in health.nodes]}, indent=2))
        return
    print(node_table(health.nodes))
    print("\nhealthy" if health.healthy else "\nNOT healthy: " + "; ".join(health.problems))
    if not health.healthy:
        raise Exit(code=3)


@clean_exit
def destroy(config: Mapping[str, Any], flags: Mapping[str, Any], yes: bool,
            ask: Callable[[str], str] = input) -> None:
    settings = load_settings(config, flags)
    if not yes and not _confirmed(settings, ask):
        raise Exit("swarmforge: nothing destroyed (answer with the cluster's name, or pass --yes)",
                   code=1)
    if not Cluster(settings).destroy():
        print(f"cluster {settings.cluster!r}: nothing to destroy")
        return
    print(f"cluster {settings.cluster!r} destroyed")


@clean_exit
def replace_node(config: Mapping[str, Any], flags: Mapping[str, Any], node: str, yes: bool,
                 rotate: bool, drain_timeout: float) -> None:
    settings = load_settings(config, flags)
    def show(outcome: ReplaceOutcome) -> None:
        heading = "resuming" if outcome.resumed else "plan"
        print(f"{heading}: replace {node} in cluster {settings.cluster!r}\n"
              + "\n".join(outcome.plan), flush=True)

    outcome = run_replace_node(Cluster(settings), node, act=yes, rotate=rotate,
                               drain_timeout=drain_timeout, show=show)
    if not outcome.acted:
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    print(f"\n{node} replaced; the swarm is healthy" + ("; join tokens rotated" if rotate else ""))


@clean_exit
def roll(config: Mapping[str, Any], flags: Mapping[str, Any], everything: bool,
         max_unavailable: int, yes: bool, rotate: bool, drain_timeout: float) -> None:
    settings = load_settings(config, flags)
    outcome = run_roll(Cluster(settings), everything=everything, max_unavailable=max_unavailable,
                       act=yes, rotate=rotate, drain_timeout=drain_timeout,
                       show=lambda plan: print(f"roll of cluster {settings.cluster!r}:\n"
                                               + "\n".join(plan), flush=True))
    if not outcome.acted:
        if outcome.plan[-1].endswith("up to date"):
            return
        print("\npreview only: nothing changed; run again with --yes to do it")
        return
    print(f"\nreplaced {len(outcome.replaced)} node(s); the swarm is healthy"
          + ("; join tokens rotated" if rotate else ""))


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
    settings = load_settings(config, flags)
    regions = tuple(r.strip() for r in (ami_regions or "").split(",") if r.strip())
    if settings.target == "local":
        if regions:
            raise ConfigError(["ami_regions: only for --target aws (a local image stays on "
                               "this machine)"])
        _show_local_bake(bake_local(settings, LocalBakeOptions(docker_version, dry_run)))
        return
    report = run_bake(settings, BakeOptions(docker_version or DEFAULT_DOCKER_VERSION, regions,
                                            dry_run))
    if report.record is None:
        print(f"packer/ is valid with {report.var_file}; nothing built (--dry-run)")
        if report.validation is ValidationLevel.LEGACY:
            print(f"Packer {report.packer_version} has no plugins: the amazon plugin's own "
                  "settings were checked for syntax only")
        return
    for region, ami_id in report.record.amis.items():
        print(f"{region}  {ami_id}")
    print(f"\nrecorded in {report.record_path} and in SSM {parameter_name(settings.cluster)}; "
          f"Packer's log: {report.record.log}")


def _show_local_bake(report: LocalBakeReport) -> None:
    if report.image is None:
        print(f"packer/local/ is valid with {report.var_file}; nothing built (--dry-run)")
        return
    print(f"local  {report.image.id}")
    print(f"\nsince {report.previous or 'no image'}: " + "\n  ".join(report.changes))
    print(f"\nrecorded in {report.record_path}; the image is in {report.image.path}; "
          f"Packer's log: {report.log}")


@clean_exit
def amis(config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    settings = load_settings(config, flags)
    cluster_amis, kind, where = _images_of(settings)
    listed = cluster_amis.inventory()
    if not listed:
        what = "local images" if isinstance(cluster_amis, LocalImages) else "AMIs"
        print(f"cluster {settings.cluster!r} has no {what} {where}")
        return
    print(ami_table(listed, cluster_amis.current(), kind))


def _images_of(settings: Settings) -> tuple[ClusterAmis | LocalImages, str, str]:
    """The cluster's images on its target: (them, what they are called, where they are)."""
    if settings.target == "local":
        return LocalImages(settings), "IMAGE", "on this machine"
    return ClusterAmis.of(settings), "AMI", f"in {settings.region}"


@clean_exit
def prune_amis(config: Mapping[str, Any], flags: Mapping[str, Any], keep: int, dry_run: bool,
               yes: bool) -> None:
    settings = load_settings(config, flags)
    cluster_amis, kind, where = _images_of(settings)
    plan = cluster_amis.prune_plan(keep)
    if plan.keep or plan.delete:
        print(plan_table(plan, kind) + "\n")
    if not plan.delete:
        print(f"cluster {settings.cluster!r}: nothing to prune {where}")
        return
    local = isinstance(cluster_amis, LocalImages)
    if dry_run or not yes:
        done = "image(s) would be removed" if local else \
            "AMI(s) would be deregistered and their snapshots deleted"
        print(f"preview: {len(plan.delete)} {done}; pass --yes to do it")
        return
    deleted = cluster_amis.prune(plan)
    print(f"removed {', '.join(deleted)}" if local
          else f"deregistered {', '.join(deleted)} and deleted their snapshots")


@clean_exit
def rebuild(config: Mapping[str, Any], flags: Mapping[str, Any], *, force: bool,
            docker_version: str | None, ami_regions: str | None, keep: int, max_age_days: float,
            drain_timeout: float, report: str | None) -> None:
    settings = load_settings(config, flags)
    options = RebuildOptions(force=force, docker_version=docker_version,
                             ami_regions=_regions(ami_regions), keep=keep,
                             max_age_days=max_age_days, drain_timeout=drain_timeout,
                             report_path=Path(report).resolve() if report else None)
    path = report_path(settings, options)
    try:
        outcome = run_rebuild(settings, options)
    except Exception:
        print(f"rebuild of cluster {settings.cluster!r} failed; report: {path}", file=sys.stderr)
        raise
    print(summary(outcome, path))
    if outcome.exit_code:
        raise Exit(code=outcome.exit_code)


def _regions(listed: str | None) -> tuple[str, ...]:
    return tuple(r.strip() for r in (listed or "").split(",") if r.strip())


@clean_exit
def state_bootstrap(config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    settings = load_settings(config, flags)
    bucket, region = settings.state_bucket, settings.state_region or settings.region
    if not bucket:
        raise ConfigError(["state_bucket: name the bucket: --bucket NAME (or swarmforge.state_bucket)"])
    account = caller_account(settings)
    report = ensure_state_bucket(client("s3", region, settings.state_endpoint), bucket, region)
    done = ("created: " + ", ".join(report.changed) if report.created
            else "found; put back: " + ", ".join(report.changed) if report.changed
            else "found, every setting in place: nothing changed")
    print(f"state bucket {bucket!r} in {region} (account {account}): {done}")
    if settings.state_lock_table:
        table = ensure_lock_table(client("dynamodb", region, settings.state_endpoint),
                                  settings.state_lock_table, region)
        print(f"lock table {table.table!r}: " + ("created" if table.created else "found: nothing changed"))
    print(f"cluster {settings.cluster!r} keeps its Terraform state at s3://{bucket}/{settings.state_key}")
