"""swarmforge tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its flags and calls one function in swarmforge.cli.
"""

import sys
from types import ModuleType

from invoke import Collection, Context, task

from swarmforge.settings import config_defaults

COMMON_HELP = {
    "cluster": "Cluster name (default: swarmforge.cluster, 'swarm'); clusters never share state or hosts.",
    "target": "Where the nodes run: 'local' (sandbox on this machine) or 'aws'.",
    "managers": "Manager count: 1, 3, 5 or 7 (odd: n managers survive (n-1)/2 failures).",
    "workers": "Worker count (0 or more).",
    "yes": "Do not ask before acting.",
}


def _cli() -> ModuleType:
    """swarmforge.cli, imported when a task runs: `--list` and `--help` need only this file."""
    from swarmforge import cli

    return cli


def _flags(c: Context, **given: object) -> tuple[dict, dict]:
    """(config section, flags given on the command line) for settings.load_settings."""
    return dict(c.config.get("swarmforge", {})), {k: v for k, v in given.items() if v is not None}


# Numeric flags default to None and reach cli as typed: a default of 1 would have Invoke
# int() the text itself, and a typo end in a traceback. cli knows their defaults and ranges.


# No short flags: -h would be --heal, where every other command reads it as --help.
@task(auto_shortflags=False,
      help={**COMMON_HELP,
            "allow_even_managers": "Accept an even manager count (it adds no failure tolerance).",
            "parallelism": "How many nodes Terraform creates at once (default: 10 on aws, "
                           "Terraform's own; 30 on the local sandbox).",
            "no_rotate": "Keep the join tokens (by default both are rotated once the swarm is healthy).",
            "autolock": "Turn swarm autolock on (managers restart locked); the unlock key goes "
                        "to the target's secret store only (see `invoke unlock-key`).",
            "heal": "First replace the nodes that are Down or whose host is gone, as "
                    "`invoke heal --yes` does (its brake included).",
            "ami": "AMI to launch nodes from on aws, overriding the AMI of record (default: SSM "
                   "/swarmforge/<cluster>/ami-id, else the newest AMI tagged for the cluster)."})
def apply(c, cluster=None, target=None, managers=None, workers=None, allow_even_managers=False,
          parallelism=None, ami=None, no_rotate=False, yes=False, autolock=False, heal=False):
    """Create or converge a swarm (shows the plan, asks at a terminal); prints the nodes."""
    _cli().apply(*_flags(c, cluster=cluster, target=target, managers=managers, workers=workers,
                         allow_even_managers=allow_even_managers or None, parallelism=parallelism,
                         ami_id=ami), rotate=not no_rotate, yes=yes, autolock=autolock,
                 heal=heal)


@task(help={"cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"],
            "managers": "Managers the swarm should have (default: as many as Terraform manages).",
            "workers": "Workers the swarm should have (default: as many as Terraform manages).",
            "json": "Print an object with `nodes` and `healthy` instead of a table."})
def status(c, cluster=None, target=None, managers=None, workers=None, json=False):
    """Show the swarm's nodes and whether it is healthy (exit 3 when it is not)."""
    _cli().status(*_flags(c, cluster=cluster, target=target), as_json=json, managers=managers,
                  workers=workers)


@task(help={k: COMMON_HELP[k] for k in ("cluster", "target", "yes")})
def destroy(c, cluster=None, target=None, yes=False):
    """Destroy every node of a cluster (asks first); on local, also its sandbox hosts and bridge."""
    _cli().destroy(*_flags(c, cluster=cluster, target=target), yes=yes)


REPLACE_HELP = {
    "cluster": COMMON_HELP["cluster"],
    "target": COMMON_HELP["target"],
    "yes": "Do it; without --yes only the checks run and the plan is shown.",
    "no_rotate": "Keep the join tokens (by default both are rotated afterwards).",
    "drain_timeout": "Seconds to wait for a drained node's tasks to move (default 120).",
}


NO_BACKUP_HELP = ("Replace a live manager without first taking a backup of the swarm "
                  "(`invoke backup`, which they take by default).")


@task(auto_shortflags=False, help={
    **REPLACE_HELP,
    "node": "The node: hostname, node ID (or a unique prefix), IP, or Terraform address "
            "such as swarm_worker[1].",
    "no_backup": NO_BACKUP_HELP})
def replace_node(c, node, cluster=None, target=None, yes=False, no_rotate=False,
                 drain_timeout=None, no_backup=False):
    """Swap one node for a fresh one without losing quorum (preview unless --yes; resumable)."""
    _cli().replace_node(*_flags(c, cluster=cluster, target=target), node=node, yes=yes,
                        rotate=not no_rotate, drain_timeout=drain_timeout, backup=not no_backup)


@task(auto_shortflags=False, help={
    **REPLACE_HELP,
    "all": "Replace every node, not only those whose image differs from the desired one.",
    "max_unavailable": "Workers replaced at once (default 1; at most the cluster's workers); "
                       "managers always go one by one.",
    "no_backup": NO_BACKUP_HELP})
def roll(c, cluster=None, target=None, all=False, max_unavailable=None, yes=False, no_rotate=False,
         drain_timeout=None, no_backup=False):
    """Replace nodes one at a time, workers first, the leader last (preview unless --yes)."""
    _cli().roll(*_flags(c, cluster=cluster, target=target), everything=all,
                max_unavailable=max_unavailable, yes=yes, rotate=not no_rotate,
                drain_timeout=drain_timeout, backup=not no_backup)


@task(auto_shortflags=False, help={
    **REPLACE_HELP,
    "yes": "Do it; without --yes only the checks run and the plan is shown.",
    "max_unhealthy_managers": "Managers that may be unhealthy at once for heal to act "
                              "(default 1; more smells of a network partition).",
    "max_unhealthy_workers": "Workers that may be unhealthy at once for heal to act "
                             "(default 34% of the workers, at least 1)."})
def heal(c, cluster=None, target=None, yes=False, no_rotate=False, drain_timeout=None,
         max_unhealthy_managers=None, max_unhealthy_workers=None):
    """Replace the nodes that are Down or whose host is gone, unless too many are (preview unless --yes)."""
    _cli().heal(*_flags(c, cluster=cluster, target=target,
                        max_unhealthy_managers=max_unhealthy_managers,
                        max_unhealthy_workers=max_unhealthy_workers),
                yes=yes, rotate=not no_rotate, drain_timeout=drain_timeout)


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"],
    "allow_downtime": "Back up a swarm of 1 manager: its Docker stops for the copy, and the "
                      "swarm cannot be managed meanwhile."})
def backup(c, cluster=None, target=None, allow_downtime=False):
    """Copy the swarm's raft from a follower manager (Docker stopped there for the copy)."""
    _cli().backup(*_flags(c, cluster=cluster, target=target), allow_downtime=allow_downtime)


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"],
    "yes": "Do it; without --yes the plan and what it loses are shown.",
    "from_backup": "Restore this backup (a name `invoke backup` printed, or 'latest') instead "
                   "of a surviving manager's own state."})
def restore(c, cluster=None, target=None, yes=False, from_backup=None):
    """Recover a swarm that lost its manager majority for good (preview unless --yes; resumable)."""
    _cli().restore(*_flags(c, cluster=cluster, target=target), yes=yes, from_backup=from_backup)


AMI_HELP = {
    "cluster": COMMON_HELP["cluster"],
    "target": COMMON_HELP["target"] + " On local, the images are local node images "
              "(<state_dir>/_images).",
    "region": "aws: the AMIs' region (default: swarmforge.region, us-east-1).",
}


# No short flags: -d/-y would be --docker-version and --dry-run, and -y reads as "yes".
@task(auto_shortflags=False,
      help={**AMI_HELP,
            "region": "aws: region to build in and record the AMI for (default: swarmforge.region).",
            "docker_version": "Docker Engine to pin, e.g. 27.3.*, 27.3.1 or ~=27.3 (aws default "
                              "27.*; local: the sandbox's own, which a bake checks, not installs).",
            "ami_regions": "aws: other regions to copy the AMI to, comma-separated.",
            "dry_run": "Render the variables and run `packer validate` only: nothing is built."})
def bake(c, cluster=None, target=None, region=None, docker_version=None, ami_regions=None,
         dry_run=False):
    """Bake the node image with Packer (aws: an AMI; local: a local image); records it for apply/roll."""
    _cli().bake(*_flags(c, cluster=cluster, target=target, region=region),
                docker_version=docker_version, ami_regions=ami_regions, dry_run=dry_run)


@task(help=AMI_HELP)
def amis(c, cluster=None, target=None, region=None):
    """List the cluster's AMIs (or local images): created, Docker version, commit, in use, current."""
    _cli().amis(*_flags(c, cluster=cluster, target=target, region=region))


@task(help={**AMI_HELP,
            "keep": "How many of the newest AMIs to keep in any case (default 3; 1 at least).",
            "dry_run": "Only show what would be deleted (also the default without --yes).",
            "yes": "Deregister the old AMIs and delete their snapshots (local: remove the images)."})
def prune_amis(c, cluster=None, target=None, region=None, keep=None, dry_run=False, yes=False):
    """Retire old AMIs (or local images): never the current one, one in use, or the newest --keep."""
    _cli().prune_amis(*_flags(c, cluster=cluster, target=target, region=region), keep=keep,
                      dry_run=dry_run, yes=yes)


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"],
    "target": COMMON_HELP["target"],
    "region": "aws: the region to bake in and check for a newer Ubuntu base (default: swarmforge.region).",
    "force": "Bake even when nothing changed.",
    "docker_version": "Docker Engine spec, e.g. ~=27.3 (default: the one the current image has); "
                      "a different one means a bake.",
    "ami_regions": "aws: other regions to copy the AMI to (and prune in), comma-separated.",
    "keep": "How many of the newest images prune keeps in any case (default 3; 1 at least).",
    "max_age_days": "Bake again when the current image is older than this, to pick up newer "
                    "Docker releases within the spec (default 30; 0: never for age alone).",
    "drain_timeout": "Seconds to wait for a drained node's tasks to move (default 120).",
    "report": "Where to write the JSON report (default: .swarmforge/_build/<cluster>/rebuild-report.json).",
    "stop_by": "An ISO 8601 time with its zone, e.g. 2026-12-07T08:17:00Z: no bake or node "
               "replacement starts past it (exit 11; the next rebuild carries on). CI: before "
               "its AWS credentials expire."})
def rebuild(c, cluster=None, target=None, region=None, force=False, docker_version=None,
            ami_regions=None, keep=None, max_age_days=None, drain_timeout=None, report=None,
            stop_by=None):
    """Unattended: bake only if something changed, roll onto it, prune (exit 0: nothing to do, 10: done)."""
    _cli().rebuild(*_flags(c, cluster=cluster, target=target, region=region), force=force,
                   docker_version=docker_version, ami_regions=ami_regions, keep=keep,
                   max_age_days=max_age_days, drain_timeout=drain_timeout, report=report,
                   stop_by=stop_by)


@task(help={"bucket": "S3 bucket for Terraform state (default: swarmforge.state_bucket); names are global.",
            "region": "The bucket's region (default: swarmforge.state_region, else swarmforge.region).",
            "cluster": COMMON_HELP["cluster"] + " Only shows where its state will live.",
            "lock_table": "Also a DynamoDB lock table, for Terraform older than 1.10 "
                          "(default: swarmforge.state_lock_table)."})
def state_bootstrap(c, bucket=None, region=None, cluster=None, lock_table=None):
    """Create the S3 state bucket (versioned, encrypted, private, TLS-only), or check and repair it."""
    _cli().state_bootstrap(*_flags(c, state_bucket=bucket, state_region=region, cluster=cluster,
                                   state_lock_table=lock_table))


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"],
    "target": COMMON_HELP["target"],
    "force": "Remove swarmforge's lock of the cluster (aws: the lease in S3 a dead run left).",
    "terraform_lock": "Remove Terraform's state lock with this ID (`terraform force-unlock`), "
                      "as a failed run names it.",
    "yes": "Do not ask before removing a lock (without a terminal: required)."})
def unlock(c, cluster=None, target=None, force=False, terraform_lock=None, yes=False):
    """Show who holds a cluster and what is unfinished; --force / --terraform-lock ID clear stale locks."""
    _cli().unlock(*_flags(c, cluster=cluster, target=target), force=force,
                  terraform_lock=terraform_lock, yes=yes)


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"],
    "rotate": "Make a new unlock key and store it (the previous one is kept a few minutes).",
    "disable": "Turn swarm autolock off and remove the key from the store."})
def unlock_key(c, cluster=None, target=None, rotate=False, disable=False):
    """Where the swarm's unlock key (autolock) is kept, never the key itself; --rotate, --disable."""
    _cli().unlock_key(*_flags(c, cluster=cluster, target=target), rotate=rotate, disable=disable)


@task(auto_shortflags=False, help={
    "cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"],
    "remove": "Remove the context, its Include in ~/.ssh/config and its alias file.",
    "no_ssh_config": "Leave ~/.ssh/config alone: print the Include line to add yourself."})
def context(c, cluster=None, target=None, remove=False, no_ssh_config=False):
    """Make (or update) the Docker context swarmforge-<cluster>, to the leader over SSH.

    docker on this machine then drives the swarm through its leader, with the cluster's key
    and pinned host keys.

    docker's ssh reads only ~/.ssh/config: the Host alias swarmforge-<cluster> lives in a file
    of the cluster's, and ~/.ssh/config gets one Include of it at its top, under a comment
    naming the cluster (nothing else in the file changes; --remove takes out both lines).
    Run it again after the leader was replaced."""
    _cli().context(*_flags(c, cluster=cluster, target=target), remove=remove,
                   ssh_config=not no_ssh_config)


@task(auto_shortflags=False, positional=["node"], help={
    "node": "The node: hostname, node ID (or a unique prefix), IP, Terraform address such as "
            "swarm_worker[1], or `leader` for the swarm's leader.",
    "cluster": COMMON_HELP["cluster"], "target": COMMON_HELP["target"]})
def ssh(c, node, cluster=None, target=None):
    """Open a shell on a node (or `leader`), or run there what follows `--`.

    `invoke ssh leader`, `invoke ssh --cluster demo swarm_worker[0] -- docker ps`: flags go
    before `--`, what follows it is the command, and its exit status is the command's."""
    _cli().ssh(*_flags(c, cluster=cluster, target=target), node=node, command=_after_dashes())


def _after_dashes() -> str:
    """What follows `--` on the command line (Invoke leaves it to the task), joined by
    spaces as ssh joins a command's words."""
    argv = sys.argv
    return " ".join(argv[argv.index("--") + 1:]) if "--" in argv else ""


ns = Collection(apply, status, destroy, replace_node, roll, backup, restore, heal, bake, amis,
                prune_amis, rebuild, state_bootstrap, unlock, unlock_key, context, ssh)
ns.configure({"swarmforge": config_defaults()})
