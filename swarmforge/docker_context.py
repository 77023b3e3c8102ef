"""Docker contexts, through the docker CLI: where it keeps them (~/.docker, or
$DOCKER_CONFIG) and in what form is the CLI's own business."""

from __future__ import annotations

import json
import shutil
from typing import Any

from swarmforge.errors import CommandError, ToolError
from swarmforge.process import check, run

LOCAL_TIMEOUT = 60.0  # context create/update/rm: files on this machine


def _docker() -> str:
    found = shutil.which("docker")
    if not found:
        raise ToolError("the docker CLI is not installed here: a Docker context is the CLI's "
                        "(https://docs.docker.com/engine/install/, the CLI package alone will do)")
    return found


def context_host(name: str) -> str | None:
    """The Docker endpoint of context ``name``; None if there is no such context."""
    result = run([_docker(), "context", "inspect", name, "--format", "{{.Endpoints.docker.Host}}"],
                 timeout=LOCAL_TIMEOUT)
    return result.stdout.strip() if result.ok else None


def save_context(name: str, host: str, description: str) -> str:
    """Make context ``name`` point at ``host``: "created", "updated" or "unchanged"."""
    current = context_host(name)
    if current == host:
        return "unchanged"
    verb = "create" if current is None else "update"
    check(run([_docker(), "context", verb, name, "--description", description,
               "--docker", f"host={host}"], timeout=LOCAL_TIMEOUT), f"docker context {verb} {name}")
    return f"{verb}d"


def remove_context(name: str) -> bool:
    """Remove context ``name`` (also when it is the one in use); False if there was none."""
    if context_host(name) is None:
        return False
    check(run([_docker(), "context", "rm", "--force", name], timeout=LOCAL_TIMEOUT),
          f"docker context rm {name}")
    return True


def swarm_through(name: str, timeout: float) -> dict[str, Any]:
    """``docker info``'s Swarm section as the daemon behind context ``name`` answers it:
    the whole way a docker command through the context goes (ssh, the remote CLI)."""
    what = f"docker --context {name} info"
    result = run([_docker(), "--context", name, "info", "--format", "{{json .Swarm}}"],
                 timeout=timeout, what=what)
    try:
        swarm: dict[str, Any] = json.loads(result.stdout) if result.ok else {}
    except json.JSONDecodeError:
        swarm = {}
    if not swarm:
        raise CommandError(what, result.returncode, result.stdout + "\n" + result.stderr)
    return swarm
