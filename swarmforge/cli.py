"""What each task does with its flags: load settings, call one use case, print the result.

Errors become one clean exit here, and only here.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from invoke.exceptions import Exit

from swarmforge.cluster import Cluster
from swarmforge.errors import SwarmforgeError
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

    return wrapper


@clean_exit
def apply(config: Mapping[str, Any], flags: Mapping[str, Any]) -> None:
    settings = load_settings(config, flags)
    report = Cluster(settings).apply()
    assert report.health is not None
    print(node_table(report.health.nodes))
    verdict = "created" if report.bootstrapped else "updated" if report.changed else "unchanged"
    print(f"\ncluster {settings.cluster!r} {verdict}: {len(report.health.managers)} managers, "
          f"{len(report.health.workers)} workers, healthy")


@clean_exit
def status(config: Mapping[str, Any], flags: Mapping[str, Any], as_json: bool) -> None:
    settings = load_settings(config, flags)
    counts_given = "managers" in flags or "workers" in flags
    health = Cluster(settings).status((settings.managers, settings.workers) if counts_given else None)
    if as_json:
        print(json.dumps({"cluster": settings.cluster, "target": settings.target,
                          "healthy": health.healthy, "problems": list(health.problems),
                          "nodes": [n.as_dict() for n in health.nodes]}, indent=2))
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


def _confirmed(settings: Settings, ask: Callable[[str], str]) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        return False
    prompt = (f"Destroy every node of cluster {settings.cluster!r} on the {settings.target} "
              f"target? Type the cluster name to confirm: ")
    try:
        return ask(prompt).strip() == settings.cluster
    except EOFError:
        return False
