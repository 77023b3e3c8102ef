"""The packer binary: its version, ``packer validate`` and ``packer build``.

Old Packer (Debian ships 1.6.6) cannot read the ``packer {}`` block of
``plugins.pkr.hcl``, nor the amazon plugin's own settings (IMDSv2, the
temporary security group's source), so this module knows how to show it only
what it understands (see ``validate``).

Every packer command has a deadline: ``timeout`` (swarmforge.packer_timeout) where
given, else swarmforge.process's fixed one; past it Packer gets SIGINT and time to
remove what it made, and CommandTimeout says so.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from packaging.version import Version

from swarmforge import process
from swarmforge.errors import CommandTimeout, PackerBuildError, ToolError
from swarmforge.packer.machine_readable import (
    BuildResult,
    parse_line,
    parse_machine_readable,
    without_target,
)
from swarmforge.packer.manifest import MANIFEST_FILE, cross_check, read_manifest
from swarmforge.packer.render import run_id_of

#: Packer reads HCL2 directories, `locals` and `formatdate` from this version on.
MINIMUM_VERSION = Version("1.6.0")
#: From this version on plugins are installed by `packer init` and may be required.
PLUGINS_SINCE = Version("1.7.0")
#: Our template uses the amazon plugin's IMDSv2 settings: a real bake needs this.
BAKE_MINIMUM_VERSION = Version("1.7.0")

PLUGINS_FILE = "plugins.pkr.hcl"
#: Settings that only the amazon plugin knows, not the builder built into Packer 1.6.
PLUGIN_ONLY_SETTINGS = ("imds_support", "metadata_options", "temporary_security_group_source_public_ip")

ProgressSink = Callable[[str], None]
TIMEOUT_SETTING = "swarmforge.packer_timeout"


def packer_version(packer: str = "packer", *, wanted: Version = MINIMUM_VERSION,
                   timeout: float | None = None) -> Version:
    """The installed Packer's version; ToolError when it is missing or too old.

    ``wanted`` is only the version the "not found" message asks for."""
    if shutil.which(packer) is None:
        raise ToolError(f"{packer} not found on PATH: install Packer {wanted} or newer")
    result = process.check(_run([packer, "version"], "packer version", timeout),
                           f"{packer} version")
    found = re.search(r"Packer v(\d+\.\d+\.\d+)", result.stdout)
    if found is None:
        raise ToolError(f"cannot tell the version of {packer}: {result.stdout.strip()!r}")
    version = Version(found.group(1))
    if version < MINIMUM_VERSION:
        raise ToolError(f"Packer {version} is too old: swarmforge needs {MINIMUM_VERSION}")
    return version


def require_version(minimum: Version, packer: str = "packer", *,
                    timeout: float | None = None) -> Version:
    """The installed version, or ToolError if it is below ``minimum`` (a real bake: 1.7)."""
    version = packer_version(packer, wanted=minimum, timeout=timeout)
    if version < minimum:
        raise ToolError(
            f"Packer {version} cannot run this build: it needs {minimum} or newer "
            "(the amazon plugin's IMDSv2 settings)"
        )
    return version


# --- validate ------------------------------------------------------------------------


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
    template_dir: Path,
    var_file: Path,
    *,
    packer: str = "packer",
    version: Version | None = None,
    timeout: float | None = None,
) -> ValidationLevel:
    """Validate the template with ``var_file``; raise CommandError with Packer's message.

    Runs ``packer init`` first when Packer has plugins. ``version``: the one the
    caller already asked Packer for. Never contacts AWS: the amazon builder's config
    checks are local, and the source AMI is only looked up when a build starts.
    """
    version = version or packer_version(packer, timeout=timeout)
    if version >= PLUGINS_SINCE:
        _init(packer, template_dir, timeout)
        _validate(packer, template_dir, var_file, timeout)
        return ValidationLevel.FULL
    with tempfile.TemporaryDirectory(prefix="swarmforge-packer-") as scratch:
        legacy = _legacy_copy(template_dir, Path(scratch) / "syntax")
        _validate(packer, legacy, var_file, timeout, "-syntax-only")
        stripped = _legacy_copy(template_dir, Path(scratch) / "settings", strip=True)
        _validate(packer, stripped, var_file, timeout)
    return ValidationLevel.LEGACY


def _init(packer: str, template_dir: Path, timeout: float | None) -> None:
    argv = [packer, "init", str(template_dir.resolve())]
    process.check(_run(argv, "packer init", timeout), "packer init")


def _validate(packer: str, template_dir: Path, var_file: Path, timeout: float | None,
              *flags: str) -> None:
    argv = [packer, "validate", *flags, f"-var-file={var_file}", str(template_dir)]
    what = " ".join(["packer validate", *flags])
    process.check(_run(argv, what, timeout), "packer validate " + " ".join(flags))


def _run(argv: Sequence[str], what: str, timeout: float | None) -> process.Completed:
    return process.run(argv, what=what, **_deadline(timeout))


def _deadline(timeout: float | None) -> dict[str, Any]:
    """``timeout`` and the setting it comes from; with None, process's fixed deadline."""
    if timeout is None:
        return {}
    return {"timeout": timeout, "setting": TIMEOUT_SETTING}


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


# --- build ---------------------------------------------------------------------------


def build(
    template_dir: Path,
    var_file: Path,
    work_dir: Path,
    on_progress: ProgressSink,
    *,
    packer: str = "packer",
    version: Version | None = None,
    init: bool = True,
    timeout: float | None = None,
) -> BuildResult:
    """Run ``packer build`` and return what it built, cross-checked with its manifest.

    The full raw output goes to a log file in ``work_dir``; ``on_progress`` gets one
    line per step. Packer runs in ``work_dir``, so its manifest lands there too.
    ``init=False`` when ``validate`` has just run ``packer init``. When ``var_file``
    passes a run id (render_var_file writes one), the manifest must carry it back.
    """
    version = version or packer_version(packer, timeout=timeout)
    work_dir.mkdir(parents=True, exist_ok=True)
    log_path = work_dir / f"packer-build-{_stamp()}.log"
    with tempfile.TemporaryDirectory(prefix="swarmforge-packer-") as scratch:
        if version >= PLUGINS_SINCE:
            if init:
                _init(packer, template_dir, timeout)
            source = template_dir
        else:
            source = _legacy_copy(template_dir, Path(scratch) / "template")
        argv = [packer, "build", "-machine-readable", "-color=false"]
        argv += [f"-var-file={var_file.resolve()}", str(source.resolve())]
        completed = _stream_to_log(argv, log_path, on_progress, cwd=work_dir, timeout=timeout)
    result = parse_machine_readable(completed.stdout.splitlines())
    if completed.returncode != 0 or not result.ok:
        errors = result.error_messages or [_last_words(completed.stdout)]
        errors += result.step_errors[-5:]
        raise PackerBuildError(completed.returncode, errors, str(log_path))
    manifest = read_manifest(work_dir / MANIFEST_FILE)
    run_id = run_id_of(var_file)
    cross_check(result, manifest, run_id)
    return replace(result, run_uuid=manifest.run_uuid, run_id=run_id, log_path=str(log_path))


def _stream_to_log(
    argv: Sequence[str], log_path: Path, on_progress: ProgressSink, *, cwd: Path,
    timeout: float | None = None,
) -> process.Completed:
    with log_path.open("w") as log:

        def on_line(line: str) -> None:
            log.write(line + "\n")
            log.flush()  # a half-finished build's log is the one people read
            shown = progress_line(line)
            if shown is not None:
                on_progress(shown)

        try:
            return process.stream(argv, on_line, cwd=str(cwd), env={"CHECKPOINT_DISABLE": "1"},
                                  what="packer build", **_deadline(timeout))
        except CommandTimeout as stopped:
            stopped.detail = (
                "Packer stopped cleanly, removing what it had made; nothing was recorded."
                if stopped.killed_after is None else
                "It had no time to clean up after itself (on aws its temporary instance, key "
                "pair and security group may be left: see the log); nothing was recorded.")
            stopped.log = str(log_path)
            raise


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
    return without_target(text).startswith("==> ")


def _last_words(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
