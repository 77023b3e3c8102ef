"""Packer's machine-readable output (``timestamp,target,type,data...``): what a build
made and what went wrong, in Packer's own words."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from swarmforge.errors import PackerOutputError


@dataclass(frozen=True)
class Message:
    """One machine-readable line: its type and its unescaped data fields."""

    target: str
    type: str
    data: tuple[str, ...]


def unescape(text: str) -> str:
    """Undo Packer's escaping of commas and line breaks inside one field."""
    return text.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_line(line: str) -> Message | None:
    """Parse one line, or None for anything that is not machine-readable (stray stderr)."""
    fields = line.rstrip("\r\n").split(",")
    if len(fields) < 3 or not fields[0].isdigit():
        return None
    _timestamp, target, type_, *data = fields
    return Message(target, type_, tuple(unescape(part) for part in data))


def without_target(text: str) -> str:
    """The text after ``<target>: ``, or "" when ``text`` does not start with a target."""
    target, separator, said = text.partition(": ")
    return said if separator and target and " " not in target else ""


@dataclass(frozen=True)
class Artifact:
    """One ``artifact,<i>,...`` group. The amazon builder's id is ``region:ami[,region:ami]``."""

    target: str
    index: int
    builder_id: str = ""
    id: str = ""
    string: str = ""

    @property
    def amis(self) -> dict[str, str]:
        """{region: ami id} from the artifact id; empty for builders that make no AMI."""
        pairs = (part.split(":", 1) for part in self.id.split(",") if ":" in part)
        return {region: ami for region, ami in pairs if ami.startswith("ami-")}


@dataclass(frozen=True)
class BuildResult:
    """What one ``packer build -machine-readable`` run reported."""

    artifacts: tuple[Artifact, ...] = ()
    error_count: int = 0
    errors: tuple[str, ...] = ()
    ui_errors: tuple[str, ...] = ()
    run_uuid: str = ""  # Packer's own, from the manifest, once cross-checked
    run_id: str = ""  # swarmforge's (the AMI's swarmforge:run-id tag), once the manifest agreed
    log_path: str = ""  # the full raw output

    @property
    def ok(self) -> bool:
        """No build reported a failure. Not the whole story: a template error fails
        before any build runs, so the exit status must be checked too."""
        return self.error_count == 0 and not self.errors

    @property
    def error_messages(self) -> list[str]:
        """Packer's own words for what failed: per-build errors, else its ui errors."""
        return list(self.errors or self.ui_errors)

    @property
    def step_errors(self) -> list[str]:
        """Errors a build's steps reported, scripts' stderr included (``==> <target>: text``):
        often the real reason behind "Script exited with non-zero exit status"."""
        return [
            said
            for text in self.ui_errors
            if text.startswith("==> ") and (said := without_target(text[4:]))
        ]

    @property
    def amis(self) -> dict[str, str]:
        """{region: ami id} over all artifacts; one region with two AMIs is an error."""
        merged: dict[str, str] = {}
        for artifact in self.artifacts:
            for region, ami in artifact.amis.items():
                if merged.setdefault(region, ami) != ami:
                    raise PackerOutputError(
                        f"Packer reported two AMIs in {region}: {merged[region]} and {ami}"
                    )
        return merged


def parse_machine_readable(lines: Iterable[str]) -> BuildResult:
    """Read a whole machine-readable transcript, dispatching on the type field only.

    The target field changes with the template language (``amazon-ebs`` in JSON,
    ``amazon-ebs.<name>`` in HCL2, empty on ui lines) so it only groups artifacts.
    """
    artifacts: dict[tuple[str, int], dict[str, Any]] = {}
    error_count = 0
    errors: list[str] = []
    ui_errors: list[str] = []
    for message in filter(None, map(parse_line, lines)):
        if message.type == "artifact":
            _collect_artifact(artifacts, message)
        elif message.type == "error-count":
            error_count = int(message.data[0])
        elif message.type == "error":
            errors.append(",".join(message.data).strip())
        elif message.type == "ui" and message.data[:1] == ("error",):
            ui_errors.append(",".join(message.data[1:]).strip())
    return BuildResult(
        artifacts=tuple(Artifact(**fields) for fields in artifacts.values()),
        error_count=error_count,
        errors=tuple(errors),
        ui_errors=tuple(ui_errors),
    )


_ARTIFACT_FIELDS = {"builder-id": "builder_id", "id": "id", "string": "string"}


def _collect_artifact(artifacts: dict[tuple[str, int], dict[str, Any]], message: Message) -> None:
    index, key, *value = message.data
    fields = artifacts.setdefault(
        (message.target, int(index)), {"target": message.target, "index": int(index)}
    )
    if key in _ARTIFACT_FIELDS:
        # Ids were escaped as one field; tolerate writers that left the commas raw.
        fields[_ARTIFACT_FIELDS[key]] = ",".join(value)
