"""The per-build variables: the Docker version pin, the run id, and the ``.pkrvars.hcl`` file.

Everything here is checked or escaped before Packer runs: a bad Docker spec
would otherwise fail ten minutes into a build, and a value holding ``${`` would
be interpolated by Packer.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from swarmforge.errors import ConfigError

# swarmforge/templates, beside this package: one place for every template swarmforge renders.
TEMPLATES = Path(__file__).parent.parent / "templates"
VAR_FILE_TEMPLATE = "bake.pkrvars.hcl.j2"
#: The Packer variable that carries the run id (packer/variables.pkr.hcl).
RUN_ID_VARIABLE = "swarmforge_run_id"
#: The bake's temporary build instance (packer/variables.pkr.hcl's default too).
BUILDER_INSTANCE_TYPE = "t3.small"
#: Canonical's account in the commercial partition (packer/variables.pkr.hcl's default
#: ubuntu_owner); the aws bake passes the one of its region's partition.
CANONICAL_COMMERCIAL = "099720109477"


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


# --- the run id ---------------------------------------------------------------------


def new_run_id() -> str:
    """A fresh run id for one bake: a random UUID, as packer/variables.pkr.hcl requires.

    Ours, not Packer's ``PackerRunUUID``: Packer hands that one only to provisioners
    and post-processors, and the AMI's tags need the id before the build starts.
    """
    return str(uuid.uuid4())


def run_id_of(var_file: Path) -> str:
    """The run id ``var_file`` passes to Packer, as render_var_file writes it; "" if none."""
    found = re.search(rf'(?m)^{RUN_ID_VARIABLE}[ \t]*=[ \t]*("(?:[^"\\\n]|\\.)*")[ \t]*$',
                      var_file.read_text())
    return str(json.loads(found.group(1))) if found else ""


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
    instance_type: str = BUILDER_INSTANCE_TYPE
    ubuntu_owner: str = CANONICAL_COMMERCIAL  # whose Ubuntu AMIs the build starts from
    docker_log_max_size: str = "10m"
    docker_log_max_file: int = 5
    run_id: str = field(default_factory=new_run_id)  # tags the AMI, checked in the manifest

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
