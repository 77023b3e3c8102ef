"""The Packer adapter: render the per-build variables, run Packer, read what it built.

Packer tells us what it built twice: in its machine-readable output
(``timestamp,target,type,data...``) and in the manifest post-processor's JSON.
We parse the first, cross-check it against the second, and trust neither alone.

Old Packer (Debian ships 1.6.6) cannot read the ``packer {}`` block of
``plugins.pkr.hcl``, nor the amazon plugin's IMDSv2 settings, so this module
knows how to show it only what it understands (see ``validate``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import jinja2
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from swarmforge import process
from swarmforge.errors import ConfigError, PackerBuildError, PackerOutputError, ToolError

#: Packer reads HCL2 directories, `locals` and `formatdate` from this version on.
MINIMUM_VERSION = Version("1.6.0")
#: From this version on plugins are installed by `packer init` and may be required.
PLUGINS_SINCE = Version("1.7.0")
#: Our template uses the amazon plugin's IMDSv2 settings: a real bake needs this.
BAKE_MINIMUM_VERSION = Version("1.7.0")

PLUGINS_FILE = "plugins.pkr.hcl"
MANIFEST_FILE = "packer-manifest.json"
#: Settings that only the amazon plugin knows, not the builder built into Packer 1.6.
PLUGIN_ONLY_SETTINGS = ("imds_support", "metadata_options")

TEMPLATES = Path(__file__).parent / "templates"
VAR_FILE_TEMPLATE = "bake.pkrvars.hcl.j2"

ProgressSink = Callable[[str], None]


# --- Docker version spec ---------------------------------------------------------


@dataclass(frozen=True)
class DockerPin:
    """A Docker version spec, as the operator wrote it and as install-docker.sh takes it.

    The script matches apt versions by ``prefix`` (27.3 matches 27.3.0, 27.3.1, ...)
    and keeps those at or above ``minimum`` when there is one.
    """

    spec: str
    prefix: str
    minimum: str = ""


def docker_pin(spec: str) -> DockerPin:
    """Turn "27.3.*", "27.3.1", "==27.3.*" or "~=27.3" into a pin; refuse anything else.

    Checked before the build: a bad spec would otherwise fail ten minutes into it.
    """
    text = spec.strip()
    # A bare version or wildcard ("27.3.*") is what people write; it means "==".
    written = f"=={text}" if text[:1].isdigit() else text
    try:
        specifiers = list(SpecifierSet(written))
    except InvalidSpecifier:
        raise ConfigError([_bad_docker_spec(spec, "not a version specifier")]) from None
    if len(specifiers) != 1:
        raise ConfigError([_bad_docker_spec(spec, "give exactly one version clause")])
    return _pin_from(spec, specifiers[0])


def _pin_from(spec: str, specifier: Specifier) -> DockerPin:
    wildcard = specifier.version.endswith(".*")
    release = _release(spec, specifier.version.removesuffix(".*"))
    if specifier.operator == "==" and wildcard:
        return DockerPin(spec, release)
    if specifier.operator == "==":
        # As in PEP 440, ==27.3 means 27.3.0 exactly, not the 27.3 series.
        padded = (*release.split("."), "0", "0")[:3]
        return DockerPin(spec, ".".join(padded))
    if specifier.operator == "~=" and release.count(".") >= 1:
        # ~=27.3 is ">=27.3, ==27.*": the series is the version without its last part.
        return DockerPin(spec, release.rsplit(".", 1)[0], minimum=release)
    reason = "wildcards only go with ==" if wildcard else f"{specifier.operator} cannot pin"
    raise ConfigError([_bad_docker_spec(spec, reason)])


def _release(spec: str, text: str) -> str:
    """Docker versions are plain X.Y.Z: no epochs, pre-releases or local parts."""
    try:
        version = Version(text)
    except InvalidVersion:
        raise ConfigError([_bad_docker_spec(spec, "not a version")]) from None
    plain = version.epoch == 0 and not (version.pre or version.post or version.dev)
    if not plain or version.local or len(version.release) > 3:
        raise ConfigError([_bad_docker_spec(spec, "Docker versions look like 27.3.1")])
    return version.base_version


def _bad_docker_spec(spec: str, reason: str) -> str:
    return f"docker_version: {spec!r}: {reason}; use e.g. 27.3.*, 27.3.1 or ~=27.3"


# --- machine-readable output -----------------------------------------------------


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
    run_uuid: str = ""  # from the manifest, once cross-checked
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
            said for text in self.ui_errors if text.startswith("==> ") and (said := _said(text[4:]))
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


def progress_line(line: str) -> str | None:
    """The one line worth showing an operator for ``line``, or None for the flood.

    Packer's own steps are ``ui,say`` lines; a provisioner's output arrives as
    ``ui,message`` lines, of which only install-docker.sh's ``==>`` step lines count.
    """
    message = parse_line(line)
    if message is None or message.type != "ui" or len(message.data) < 2:
        return None
    kind, text = message.data[0], ",".join(message.data[1:]).strip()
    if kind in ("say", "error") and text:
        return text
    if kind == "message" and _is_script_step(text):
        return text
    return None


def _is_script_step(text: str) -> bool:
    # "amazon-ebs.ubuntu_docker: ==> Installing Docker Engine ..."
    return _said(text).startswith("==> ")


def _said(text: str) -> str:
    """The text after ``<target>: ``, or "" when ``text`` does not start with a target."""
    target, separator, said = text.partition(": ")
    return said if separator and target and " " not in target else ""


# --- manifest --------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The builds of the newest Packer run recorded in a manifest file."""

    run_uuid: str
    artifact_ids: tuple[str, ...]
    custom_data: tuple[dict[str, str], ...] = field(default=())


def read_manifest(path: Path) -> Manifest:
    """Read ``packer-manifest.json``, keeping only the last run's builds (the file appends)."""
    try:
        document = json.loads(path.read_text())
        builds = document["builds"]
        run_uuid = document.get("last_run_uuid") or builds[-1]["packer_run_uuid"]
    except (OSError, ValueError, KeyError, IndexError, TypeError) as problem:
        raise PackerOutputError(f"cannot read Packer's manifest {path}: {problem}") from None
    last = [build for build in builds if build.get("packer_run_uuid") == run_uuid]
    return Manifest(
        run_uuid=run_uuid,
        artifact_ids=tuple(build["artifact_id"] for build in last),
        custom_data=tuple(build.get("custom_data") or {} for build in last),
    )


def cross_check(result: BuildResult, manifest: Manifest) -> None:
    """Raise PackerOutputError unless the output and the manifest name the same artifacts."""
    parsed = {_id_parts(artifact.id) for artifact in result.artifacts}
    recorded = {_id_parts(artifact_id) for artifact_id in manifest.artifact_ids}
    if parsed != recorded:
        raise PackerOutputError(
            "Packer's output and its manifest disagree about what was built "
            f"(run {manifest.run_uuid}): output {_show(parsed)}, manifest {_show(recorded)}"
        )


def _id_parts(artifact_id: str) -> frozenset[str]:
    # The order of regions inside one id carries no meaning.
    return frozenset(part for part in artifact_id.split(",") if part)


def _show(ids: set[frozenset[str]]) -> str:
    return "[" + "; ".join(sorted(",".join(sorted(parts)) for parts in ids)) + "]"


# --- the packer binary ---------------------------------------------------------------


def packer_version(packer: str = "packer", *, wanted: Version = MINIMUM_VERSION) -> Version:
    """The installed Packer's version; ToolError when it is missing or too old.

    ``wanted`` is only the version the "not found" message asks for."""
    if shutil.which(packer) is None:
        raise ToolError(f"{packer} not found on PATH: install Packer {wanted} or newer")
    result = process.check(process.run([packer, "version"]), f"{packer} version")
    found = re.search(r"Packer v(\d+\.\d+\.\d+)", result.stdout)
    if found is None:
        raise ToolError(f"cannot tell the version of {packer}: {result.stdout.strip()!r}")
    version = Version(found.group(1))
    if version < MINIMUM_VERSION:
        raise ToolError(f"Packer {version} is too old: swarmforge needs {MINIMUM_VERSION}")
    return version


def require_version(minimum: Version, packer: str = "packer") -> Version:
    """The installed version, or ToolError if it is below ``minimum`` (a real bake: 1.7)."""
    version = packer_version(packer, wanted=minimum)
    if version < minimum:
        raise ToolError(
            f"Packer {version} cannot run this build: it needs {minimum} or newer "
            "(the amazon plugin's IMDSv2 settings)"
        )
    return version


class ValidationLevel(str, Enum):
    """How much of the template one Packer version could check.

    FULL: ``packer init`` then ``packer validate``: every file, every setting.
    LEGACY (Packer < 1.7): ``-syntax-only`` over every file but plugins.pkr.hcl, then
    a full ``validate`` of the same files without PLUGIN_ONLY_SETTINGS, which the
    builder built into old Packer does not know.
    """

    FULL = "full"
    LEGACY = "legacy"


def validate(
    template_dir: Path, var_file: Path, *, packer: str = "packer", version: Version | None = None
) -> ValidationLevel:
    """Validate the template with ``var_file``; raise CommandError with Packer's message.

    Runs ``packer init`` first when Packer has plugins. ``version``: the one the
    caller already asked Packer for. Never contacts AWS: the amazon builder's config
    checks are local, and the source AMI is only looked up when a build starts.
    """
    version = version or packer_version(packer)
    if version >= PLUGINS_SINCE:
        _init(packer, template_dir)
        _validate(packer, template_dir, var_file)
        return ValidationLevel.FULL
    with tempfile.TemporaryDirectory(prefix="swarmforge-packer-") as scratch:
        legacy = _legacy_copy(template_dir, Path(scratch) / "syntax")
        _validate(packer, legacy, var_file, "-syntax-only")
        stripped = _legacy_copy(template_dir, Path(scratch) / "settings", strip=True)
        _validate(packer, stripped, var_file)
    return ValidationLevel.LEGACY


def _init(packer: str, template_dir: Path) -> None:
    process.check(process.run([packer, "init", str(template_dir.resolve())]), "packer init")


def _validate(packer: str, template_dir: Path, var_file: Path, *flags: str) -> None:
    argv = [packer, "validate", *flags, f"-var-file={var_file}", str(template_dir)]
    process.check(process.run(argv), "packer validate " + " ".join(flags))


def _legacy_copy(template_dir: Path, into: Path, *, strip: bool = False) -> Path:
    """The template as Packer < 1.7 can read it: without plugins.pkr.hcl and,
    with ``strip``, without the plugin-only settings."""
    into.mkdir(parents=True)
    for source in sorted(template_dir.glob("*.pkr.hcl")):
        if source.name == PLUGINS_FILE:
            continue
        text = source.read_text()
        (into / source.name).write_text(_strip_plugin_only(text) if strip else text)
    return into


def _strip_plugin_only(text: str) -> str:
    # The files are `packer fmt`-canonical, so a block closes at its own indentation.
    for name in PLUGIN_ONLY_SETTINGS:
        text = re.sub(rf"(?m)^[ \t]*{name}[ \t]*=.*\n", "", text)
        text = re.sub(rf"(?ms)^([ \t]*){name}[ \t]*\{{.*?^\1\}}[ \t]*\n", "", text)
    return text


def build(
    template_dir: Path,
    var_file: Path,
    work_dir: Path,
    on_progress: ProgressSink,
    *,
    packer: str = "packer",
    version: Version | None = None,
    init: bool = True,
) -> BuildResult:
    """Run ``packer build`` and return what it built, cross-checked with its manifest.

    The full raw output goes to a log file in ``work_dir``; ``on_progress`` gets one
    line per step. Packer runs in ``work_dir``, so its manifest lands there too.
    ``init=False`` when ``validate`` has just run ``packer init``.
    """
    version = version or packer_version(packer)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"packer-build-{_stamp()}.log"
    with tempfile.TemporaryDirectory(prefix="swarmforge-packer-") as scratch:
        if version >= PLUGINS_SINCE:
            if init:
                _init(packer, template_dir)
            source = template_dir
        else:
            source = _legacy_copy(template_dir, Path(scratch) / "template")
        argv = [packer, "build", "-machine-readable", "-color=false"]
        argv += [f"-var-file={var_file.resolve()}", str(source.resolve())]
        completed = _stream_to_log(argv, log_path, on_progress, cwd=work_dir)
    result = parse_machine_readable(completed.stdout.splitlines())
    if completed.returncode != 0 or not result.ok:
        errors = result.error_messages or [_last_words(completed.stdout)]
        errors += result.step_errors[-5:]
        raise PackerBuildError(completed.returncode, errors, str(log_path))
    manifest = read_manifest(work_dir / MANIFEST_FILE)
    cross_check(result, manifest)
    return replace(result, run_uuid=manifest.run_uuid, log_path=str(log_path))


def _stream_to_log(
    argv: Sequence[str], log_path: Path, on_progress: ProgressSink, *, cwd: Path
) -> process.Completed:
    with log_path.open("w") as log:

        def on_line(line: str) -> None:
            log.write(line + "\n")
            log.flush()  # a half-finished build's log is the one people read
            shown = progress_line(line)
            if shown is not None:
                on_progress(shown)

        return process.stream(argv, on_line, cwd=str(cwd), env={"CHECKPOINT_DISABLE": "1"})


def _last_words(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# --- the per-build variables file ---------------------------------------------------


@dataclass(frozen=True)
class BakeVariables:
    """The values of one bake, written to a ``.pkrvars.hcl`` file."""

    cluster: str
    region: str
    git_commit: str
    docker: DockerPin
    scripts_dir: Path
    ami_regions: tuple[str, ...] = ()
    instance_type: str = "t3.small"
    docker_log_max_size: str = "10m"
    docker_log_max_file: int = 5

    @property
    def copy_regions(self) -> list[str]:
        """Regions to copy to: the build region itself is never one of them."""
        return sorted(set(self.ami_regions) - {self.region})


def render_var_file(variables: object, path: Path, template: str = VAR_FILE_TEMPLATE) -> Path:
    """Write ``variables`` (a BakeVariables, or what ``template`` reads) as HCL to ``path``,
    every value escaped, and return ``path``."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # HCL, not HTML: values go through the hcl filter instead
    )
    environment.filters["hcl"] = hcl_value
    text = environment.get_template(template).render(v=variables)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def hcl_value(value: object) -> str:
    """A string or list of strings as an HCL literal; `${` and `%{` would interpolate."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(item) for item in value) + "]"
    quoted = json.dumps(str(value))
    return quoted.replace("${", "$${").replace("%{", "%%{")
