"""swarmforge tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its flags and calls one function in swarmforge.cli.
"""

from invoke import Collection, Context, task

from swarmforge import cli
from swarmforge.settings import config_defaults

COMMON_HELP = {
    "cluster": "Cluster name (default: swarmforge.cluster, 'swarm'); clusters never share state or hosts.",
    "target": "Where the nodes run: 'local' (sandbox on this machine) or 'aws'.",
    "managers": "Manager count: 1, 3, 5 or 7 (odd: n managers survive (n-1)/2 failures).",
    "workers": "Worker count (0 or more).",
    "yes": "Do not ask before acting.",
}


def _flags(c: Context, **given: object) -> tuple[dict, dict]:
    """(config section, flags given on the command line) for settings.load_settings."""
    return dict(c.config.get("swarmforge", {})), {k: v for k, v in given.items() if v is not None}


@task(help={**COMMON_HELP,
            "allow_even_managers": "Accept an even manager count (it adds no failure tolerance).",
            "parallelism": "How many nodes Terraform creates at once (default 10)."})
def apply(c, cluster=None, target=None, managers=None, workers=None, allow_even_managers=False,
          parallelism=None, yes=False):
    """Create or converge a swarm: bootstrap one manager, then join the rest; prints the nodes."""
    cli.apply(*_flags(c, cluster=cluster, target=target, managers=managers, workers=workers,
                      allow_even_managers=allow_even_managers or None, parallelism=parallelism))


@task(help={**COMMON_HELP,
            "managers": "Managers the swarm should have (default: as many as Terraform manages).",
            "workers": "Workers the swarm should have (default: as many as Terraform manages).",
            "json": "Print an object with `nodes` and `healthy` instead of a table."})
def status(c, cluster=None, target=None, managers=None, workers=None, json=False, yes=False):
    """Show the swarm's nodes and whether it is healthy (exit 3 when it is not)."""
    cli.status(*_flags(c, cluster=cluster, target=target, managers=managers, workers=workers),
               as_json=json)


@task(help=COMMON_HELP)
def destroy(c, cluster=None, target=None, managers=None, workers=None, yes=False):
    """Destroy every node of a cluster (asks first); on local, also its sandbox hosts and bridge."""
    cli.destroy(*_flags(c, cluster=cluster, target=target), yes=yes)


ns = Collection(apply, status, destroy)
ns.configure({"swarmforge": config_defaults()})
