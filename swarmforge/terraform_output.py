"""What Terraform says, read: its JSON lines (``-json``) as plans, progress and diagnostics.

terraform.py runs Terraform; this reads what it printed, and decides nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from swarmforge.nodes import follows_a_node, is_node, join_step_of

# What `terraform init` says when a provider cannot be had (offline, no mirror, no such version).
PROVIDER_FAILURES = ("Failed to query available provider packages", "Failed to install provider")


@dataclass(frozen=True)
class PlannedChange:
    address: str
    action: str  # create, update, delete, replace, ...
    reason: str | None = None  # e.g. "tainted" for a node whose provisioning failed


@dataclass(frozen=True)
class Plan:
    changes: tuple[PlannedChange, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    def removals(self) -> list[PlannedChange]:
        return [c for c in self.changes if c.action in ("delete", "replace")]

    def swarm_changes(self) -> list[PlannedChange]:
        """The changes to nodes, to their swarm steps and to what follows a node (its ingress
        attachments): the ones that need the swarm, or a node, first."""
        return [c for c in self.changes
                if is_node(c.address) or join_step_of(c.address) or follows_a_node(c.address)]

    def support_changes(self) -> list[PlannedChange]:
        """Every other managed resource's change: the network (security-group rules, NAT)
        and whatever else the nodes run in. Data sources are read as their dependents need."""
        swarm = set(self.swarm_changes())
        return [c for c in self.changes if c not in swarm and not c.address.startswith("data.")]


def missing_provider(output: str) -> str | None:
    """``provider NAME: why`` when init failed for want of a provider; None otherwise."""
    flat = " ".join(output.split())  # Terraform wraps its diagnostics over several lines
    if not any(failure in flat for failure in PROVIDER_FAILURES):
        return None
    name = re.search(r"(?:for provider|installing) ([\w.-]+/[\w.-]+)", flat)
    offline = re.search(r"could not connect to ([\w.-]+)", flat)
    why = f"could not connect to {offline.group(1)}" if offline else "see the log"
    return f"provider {name.group(1) if name else '(unknown)'}: {why}"


def events(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def planned_changes(output: str) -> list[PlannedChange]:
    changes = []
    for event in events(output):
        if event.get("type") == "planned_change":
            change = event["change"]
            changes.append(PlannedChange(change["resource"]["addr"], change["action"],
                                         change.get("reason")))
    return changes


# Events worth a line of progress; the rest (refresh chatter, hooks) stay in the log.
PROGRESS_EVENTS = {"apply_start", "apply_complete", "apply_errored", "provision_progress",
                   "provision_errored", "change_summary", "diagnostic"}


# What the SSH communicator says on every connection: noise once it works.
# So are local-exec's echo of its command and the notice that a provisioner
# touching a sensitive variable prints nothing. All of it stays in the log.
CHATTER = ("Connecting to remote host via SSH", "Host:", "User:", "Password:", "Private key:",
           "Certificate:", "SSH Agent:", "Checking Host Key:", "Target Platform:", "Connected!",
           "Executing:", "(output suppressed due to sensitive value in config)")


def progress_message(line: str) -> str | None:
    if not line.startswith("{"):
        return line.strip() or None
    try:
        event = json.loads(line)
    except ValueError:
        return line
    if event.get("type") not in PROGRESS_EVENTS:
        return None
    if str(event.get("hook", {}).get("output", "")).strip().startswith(CHATTER):
        return None
    if event.get("type") == "diagnostic":
        diagnostic = event.get("diagnostic", {})
        return f"{diagnostic.get('severity', 'error')}: {diagnostic.get('summary', '')}"
    return str(event.get("@message", "")) or None


def started_resource(line: str) -> str | None:
    """The address of the resource instance whose apply a JSON UI line says began."""
    if not line.startswith('{"') or '"apply_start"' not in line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if event.get("type") != "apply_start":
        return None
    return str(event.get("hook", {}).get("resource", {}).get("addr", "")) or None


def diagnostics(output: str) -> str:
    """Terraform's error diagnostics (and failing provisioner output) in plain text."""
    lines = []
    for event in events(output):
        kind = event.get("type")
        if kind == "diagnostic" and event["diagnostic"].get("severity") == "error":
            diagnostic = event["diagnostic"]
            lines.append(f"{diagnostic.get('summary', '')}: {diagnostic.get('detail', '')}".strip())
        elif kind in ("provision_errored", "apply_errored"):
            lines.append(str(event.get("@message", "")))
    plain = [line for line in output.splitlines() if line and not line.startswith("{")]
    return "\n".join(lines or plain)
